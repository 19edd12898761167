"""Redis with Sentinel: 20,000 messages while the primary is SIGKILLed at a third and a replica
takes its place (the old primary is then started again, as a replica). Replication is
asynchronous: without `wait`, acknowledged entries the primary had not yet passed on are lost,
and the test reports how many; with `?wait=1` a publish returns only once a replica has it,
and nothing acknowledged may be lost. 1,000 of the messages are delayed by 3 s from just
before the kill, so the scheduler must follow the new primary too, as must the consumers."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import mqkit
from tests.support.chaos import Tally, publish_all
from tests.support.services import CLUSTER_URLS, services
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TOTAL = 20_000
DELAYED = 1_000


@pytest.mark.timeout(600)
@pytest.mark.parametrize("wait", ["0", "1"])
async def test_redis_sentinel_primary_killed(wait: str) -> None:
    topic, group = f"chaos-sentinel-{uuid.uuid4().hex[:10]}", "failover"
    url = CLUSTER_URLS["redis-sentinel"] + f"?wait={wait}&lease=5s&publish_timeout=10s"
    tally = Tally(f"redis-sentinel primary SIGKILLed during {TOTAL}, wait={wait}")
    confirmed: dict[str, float] = {}
    received_at: list[tuple[float, str]] = []
    killed = 0.0
    delayed_ids: set[str] = set()
    async with mqkit.connect(url) as broker:
        subs = [await broker.subscribe(topic, group=group, prefetch=100) for _ in range(3)]

        async def consume(sub: mqkit.Subscription) -> None:
            async for delivery in sub:
                tally.received[delivery.message.id] += 1
                received_at.append((time.monotonic(), delivery.message.id))
                await delivery.ack()

        def resumed() -> float | None:
            after = [t for t, mid in received_at if t >= killed and confirmed.get(mid, 0) >= killed]
            return min(after) - killed if after else None

        async def kill_primary() -> str:
            nonlocal killed
            await wait_until(lambda: len(confirmed) >= TOTAL // 3, 120, "a third published")
            delayed = [mqkit.Message.create(topic, f"d{i}") for i in range(DELAYED)]
            delayed_ids.update(m.id for m in delayed)
            await broker.publish_batch(delayed, delay=3.0)
            now = time.monotonic()
            confirmed.update((m.id, now) for m in delayed)
            primary = await services("kill", "redis-sentinel", "primary")
            killed = time.monotonic()
            await wait_until(lambda: resumed() is not None, 60, "consumption resumed")
            await services("up", "redis-sentinel")
            return primary

        consumers = [asyncio.create_task(consume(s)) for s in subs]
        started = time.monotonic()
        failures, primary = await asyncio.gather(
            publish_all(broker, topic, confirmed, TOTAL, pace=0.02), kill_primary()
        )
        tally.sent = set(confirmed)

        def settled() -> bool:
            """Everything received, or (what was lost never comes) 15 s without one more."""
            quiet = bool(received_at) and time.monotonic() - received_at[-1][0] > 15
            return tally.sent <= tally.received.keys() or quiet

        await wait_until(settled, 180, "all received, or 15 s without one more")
        for consumer in consumers:
            consumer.cancel()
        for sub in subs:
            await sub.close()
    new_primary = await services("which", "redis-sentinel", "primary")
    delayed_lost = len(delayed_ids - tally.received.keys())
    tally.report(
        **{
            "killed node": primary,
            "primary after": new_primary,
            "publish retries": failures,
            f"of {DELAYED} delayed lost": delayed_lost,
            "resumed after": f"{resumed() or float('inf'):.1f}s",
            "total": f"{time.monotonic() - started:.0f}s",
        }
    )
    assert (resumed() or float("inf")) <= 30.0
    if wait == "1":
        assert tally.lost == 0
