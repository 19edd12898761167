"""Kafka cluster, a network partition (the cluster chaos suite's fifth case): three KRaft
nodes, each in a network namespace of its own (scripts/services kafka-netns), 20,000
messages published while three consumers in one group drain them; at a third, the broker
leading partition 0 is cut off, from the other brokers and from the clients alike, for
30 s (its link down: no packet in or out, no reset, as a pulled cable), then joined again.

Topics are replicated 3 times with min.insync.replicas 2 and publishes wait for acks=all,
so the cut-off leader cannot acknowledge anything on its own: nothing acknowledged may be
lost, and consumption must go on (the other partitions, then partition 0 under its new
leader) before the partition heals. The case reports when, and how long the healed node
took to be back in every partition's in-sync replicas."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

import mqkit
from tests.support.chaos import Received, Tally, publish_all
from tests.support.services import KAFKA_NETNS, services
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TOTAL = 20_000
PARTITIONED_FOR = 30.0


@dataclass
class Seen:
    node: str = ""
    resumed: float = float("inf")  # seconds from the cut to consumption going on
    healed_after: float = 0.0
    in_sync_after: float = float("inf")  # seconds from the heal to every ISR whole again


@pytest.fixture
async def cluster() -> AsyncIterator[str]:
    """kafka-netns, started empty for this case and stopped after it (its three JVMs are
    not wanted by the other cases)."""
    await services("reset", "kafka-netns")
    try:
        yield KAFKA_NETNS
    finally:
        await services("heal", "kafka-netns")
        await services("down", "kafka-netns")


async def whole(topic: str) -> bool:
    """Whether every partition of `topic` has all its replicas in sync (kcat's metadata)."""
    process = await asyncio.create_subprocess_exec(
        "kcat", "-b", KAFKA_NETNS.removeprefix("kafka://"), "-L", "-m", "5", "-t", topic,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await process.communicate()
    found = re.findall(r"replicas: ([0-9,]+), isrs: ([0-9,]+)", out.decode())
    return bool(found) and all(set(r.split(",")) == set(i.split(",")) for r, i in found)


@pytest.mark.timeout(900)
async def test_kafka_cluster_leader_partitioned_for_30s(cluster: str) -> None:
    topic = f"chaos-partition-{uuid.uuid4().hex[:10]}"
    url = cluster + "?partitions=3&publish_timeout=10s"
    tally = Tally(f"kafka-netns leader of partition 0 cut off for 30s during {TOTAL}")
    confirmed: dict[str, float] = {}
    received = Received(tally, confirmed)
    seen = Seen()
    async with mqkit.connect(url) as broker:
        subs = [await broker.subscribe(topic, group="partition", prefetch=200) for _ in range(3)]

        async def partition() -> None:
            await wait_until(lambda: len(confirmed) >= TOTAL // 3, 180, "a third published")
            seen.node = await services("partition", "kafka-netns", f"leader:{topic}:0")
            cut = time.monotonic()
            try:
                await wait_until(lambda: received.resumed_since(cut) is not None, 120, "resumed")
                seen.resumed = (received.resumed_since(cut) or cut) - cut
                await asyncio.sleep(max(0.0, cut + PARTITIONED_FOR - time.monotonic()))
            finally:
                await services("heal", "kafka-netns", seen.node)
            healed = time.monotonic()
            seen.healed_after = healed - cut
            deadline = healed + 120
            while not await whole(topic):
                assert time.monotonic() < deadline, "the healed node never caught up"
                await asyncio.sleep(0.5)
            seen.in_sync_after = time.monotonic() - healed

        started = time.monotonic()
        failures = await received.drain(
            subs,
            publish_all(broker, topic, confirmed, TOTAL, pace=0.05),
            partition(),
        )
    tally.report(
        **{
            "partitioned node": seen.node,
            "publish retries": failures,
            "resumed after": f"{seen.resumed:.1f}s",
            "healed after": f"{seen.healed_after:.1f}s",
            "back in sync": f"{seen.in_sync_after:.1f}s after the heal",
            "total": f"{time.monotonic() - started:.0f}s",
        }
    )
    assert tally.lost == 0
    assert seen.resumed < seen.healed_after, "consumption waited for the partition to heal"
