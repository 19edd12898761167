"""Chaos 1: 10,000 messages while the broker is SIGKILLed and started again at 1/3 and 1/2.

The test never re-creates a client: publisher and consumer ride through both crashes.
Nothing reported as published is lost, and consumption resumes within 10 s of the broker
answering again. The embedded sqlite queue has no server to kill: there the process that
holds the database (the worker) is SIGKILLed and started again instead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

import mqkit
from tests.support.chaos import Tally, Worker, handled, kill_and_start, publish_all
from tests.support.services import URLS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TOTAL = 10_000


@pytest.mark.timeout(420)  # two crash recoveries of a JVM broker on a loaded 2-core machine
@pytest.mark.parametrize("service", ["redis", "rabbitmq", "kafka"])
async def test_broker_sigkill_loses_nothing(service: str) -> None:
    topic = f"chaos-crash-{uuid.uuid4().hex[:10]}"
    tally = Tally(f"{service} SIGKILL at 1/3 and 1/2 of {TOTAL}")
    confirmed: dict[str, float] = {}
    received_at: list[tuple[float, str]] = []
    answered: list[float] = []
    async with mqkit.connect(URLS[service] + _options(service)) as broker:
        sub = await broker.subscribe(topic, group="survivors", prefetch=200)

        async def consume() -> None:
            async for delivery in sub:
                tally.received[delivery.message.id] += 1
                received_at.append((time.monotonic(), delivery.message.id))
                await delivery.ack()

        async def chaos() -> None:
            for fraction in (1 / 3, 1 / 2):
                while len(confirmed) < TOTAL * fraction:
                    await asyncio.sleep(0.05)
                answered.append(await kill_and_start(service))

        consumer = asyncio.create_task(consume())
        started = time.monotonic()
        failures, _ = await asyncio.gather(publish_all(broker, topic, confirmed, TOTAL), chaos())
        tally.sent = set(confirmed)
        try:
            await wait_until(lambda: tally.sent <= tally.received.keys(), 180, "all received")
        finally:
            consumer.cancel()
            await sub.close()
    # Resumed: the first message confirmed after the broker answered that was also received.
    resumed = []
    for up in answered:
        after = [t for t, mid in received_at if t >= up and confirmed.get(mid, 0) >= up]
        resumed.append(min(after) - up if after else float("inf"))
    tally.report(
        **{
            "publish retries": failures,
            "resumed after": ", ".join(f"{r:.1f}s" for r in resumed),
            "total": f"{time.monotonic() - started:.0f}s",
        }
    )
    assert tally.lost == 0
    assert max(resumed) <= 10.0


def _options(service: str) -> str:
    # Publishes give up on a dead broker after 5 s (the loop above tries again); Redis leases
    # short enough that deliveries lost with a crashed connection come back soon.
    return "?publish_timeout=5s" + ("&lease=5s" if service == "redis" else "")


@pytest.mark.timeout(240)
async def test_sqlite_worker_sigkill_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}?lease=3s"
    topic, log = "chaos-crash", tmp_path / "handled.log"
    tally = Tally(f"sqlite worker SIGKILL at 1/3 and 1/2 of {TOTAL}")
    confirmed: dict[str, float] = {}
    resumed: list[float] = []
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group="survivors")).close()
        worker = await Worker(url, topic, "survivors", log).ready()

        async def chaos() -> None:
            nonlocal worker
            for fraction in (1 / 3, 1 / 2):
                while sum(handled(log).values()) < TOTAL * fraction:
                    await asyncio.sleep(0.05)
                worker.kill()
                before = sum(handled(log).values())
                worker = await Worker(url, topic, "survivors", log).ready()
                up = time.monotonic()
                await wait_until(
                    lambda before=before: sum(handled(log).values()) > before, 30, "resumed"
                )
                resumed.append(time.monotonic() - up)

        await asyncio.gather(publish_all(broker, topic, confirmed, TOTAL, pace=0.01), chaos())
    tally.sent = set(confirmed)
    try:
        await wait_until(lambda: tally.sent <= handled(log).keys(), 120, "all handled")
    finally:
        worker.stop()
    tally.received = handled(log)
    tally.report(**{"resumed after": ", ".join(f"{r:.1f}s" for r in resumed)})
    assert tally.lost == 0
    assert max(resumed) <= 10.0
