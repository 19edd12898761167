"""Kafka cluster, Kafka's own replication_test "hard bounce": 20,000 messages published while
three consumers in one group drain them; the broker leading partition 0 is SIGKILLed and
started again 5 times, each time whichever broker leads it then. Topics are replicated 3
times with min.insync.replicas 2 and publishes wait for acks=all: nothing acknowledged may be
lost, consumption resumes within 30 s of each kill, and duplicates are counted."""

from __future__ import annotations

import time
import uuid

import pytest

import mqkit
from tests.support.chaos import Received, Tally, publish_all
from tests.support.services import CLUSTER_URLS, services
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TOTAL = 20_000
BOUNCES = 5
SEGMENT = TOTAL // (BOUNCES + 1)  # published between two bounces; each kill lands halfway


@pytest.mark.timeout(900)
async def test_kafka_cluster_leader_hard_bounce() -> None:
    topic = f"chaos-bounce-{uuid.uuid4().hex[:10]}"
    url = CLUSTER_URLS["kafka-cluster"] + "?partitions=3&publish_timeout=10s"
    tally = Tally(f"kafka-cluster leader of partition 0 SIGKILLed {BOUNCES}x during {TOTAL}")
    confirmed: dict[str, float] = {}
    received = Received(tally, confirmed)
    kills: list[tuple[str, float]] = []
    quota = SEGMENT
    async with mqkit.connect(url) as broker:
        subs = [await broker.subscribe(topic, group="bounce", prefetch=200) for _ in range(3)]

        async def bounce() -> None:
            nonlocal quota
            for k in range(BOUNCES):
                quota = (k + 1) * SEGMENT
                half = k * SEGMENT + SEGMENT // 2
                await wait_until(lambda n=half: len(confirmed) >= n, 120, "half the segment")
                node = await services("kill", "kafka-cluster", f"leader:{topic}:0")
                killed = time.monotonic()
                kills.append((node, killed))
                await wait_until(
                    lambda at=killed: received.resumed_since(at) is not None, 60, "resumed"
                )
                await services("up", "kafka-cluster")
            quota = TOTAL

        started = time.monotonic()
        failures = await received.drain(
            subs,
            publish_all(broker, topic, confirmed, TOTAL, pace=0.05, quota=lambda: quota),
            bounce(),
        )
    resumes = [(received.resumed_since(killed) or float("inf")) - killed for _, killed in kills]
    tally.report(
        **{
            "killed nodes": ",".join(node for node, _ in kills),
            "publish retries": failures,
            "resumed after": ", ".join(f"{r:.1f}s" for r in resumes),
            "total": f"{time.monotonic() - started:.0f}s",
        }
    )
    assert tally.lost == 0
    assert max(resumes) <= 30.0
