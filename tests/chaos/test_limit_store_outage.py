"""The Redis holding a shared rate limit goes down for 5 s while a worker drains a
backlog (the broker itself, embedded SQLite, stays up). Fail closed ("pause"): nothing is
processed while Redis is away, and draining resumes at the limit once it answers. Fail open
("local"): the worker keeps to rate / workers on its own throughout."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

import mqkit
from tests.support.chaos import Tally
from tests.support.services import URLS, services
from tests.support.waiting import receive

pytestmark = pytest.mark.slow

RATE = 50
DOWN_AT, UP_AT = 2.0, 7.0
# How long the worker keeps draining once Redis answers again. The rate after is measured
# from its return, not from a fixed end: a restart that is slow on a loaded machine would
# otherwise leave that window empty.
AFTER = 4.0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("outage", ["pause", "local"])
async def test_the_limit_store_goes_away(tmp_path: Path, outage: str) -> None:
    tally = Tally(f"shared limit {RATE}/s, its Redis down {UP_AT - DOWN_AT:g}s ({outage})")
    handled: list[float] = []
    async with mqkit.connect(f"sqlite:///{tmp_path / 'broker.db'}") as broker:
        app = mqkit.App(broker=broker, limits_url=URLS["redis"], limits_outage=outage)  # type: ignore[arg-type]

        @app.subscriber(
            "work", group="g", concurrency=4, rate=RATE, burst=5, rate_key=uuid.uuid4().hex
        )
        async def work(message: mqkit.Message) -> None:
            tally.received[message.id] += 1
            handled.append(time.monotonic())

        batch = [mqkit.Message.create("work", b"") for _ in range(1000)]
        tally.sent.update(m.id for m in batch)
        await broker.publish_batch(batch)
        async with app.running():
            started = time.monotonic()
            await asyncio.sleep(DOWN_AT)
            await services("down", "redis")
            await asyncio.sleep(max(0.0, started + UP_AT - time.monotonic()))
            await services("up", "redis")
            up = time.monotonic() - started
            await asyncio.sleep(AFTER)
            end = time.monotonic() - started
        stats = app.subscribers[0].stats
        # What the limit held back is still in the broker: take it without a limit.
        processed = len(tally.received)
        rest = await broker.subscribe("work", group="g")
        for delivery in await receive(rest, len(batch) - processed, timeout=30):
            tally.received[delivery.message.id] += 1
        await rest.close()
    during = sum(DOWN_AT + 1.5 <= t - started < UP_AT for t in handled) / (UP_AT - DOWN_AT - 1.5)
    after = [t - started for t in handled if t - started >= up]
    resumed = after[0] - up if after else float("inf")
    rate_after = sum(up + 1.5 <= t < end for t in after) / (end - up - 1.5)
    tally.report(
        **{
            "per second while down": f"{during:.1f}",
            "resumed after": f"{resumed:.1f}s",
            "per second after": f"{rate_after:.1f}",
            "processed under the limit": processed,
        }
    )
    assert tally.lost == 0 and tally.duplicated == 0
    assert stats.retried == stats.dead_lettered == 0
    if outage == "pause":
        assert during == 0
    else:
        assert 0.7 * RATE <= during <= 1.1 * RATE
    assert resumed <= 3.0
    assert 0.8 * RATE <= rate_after <= 1.1 * RATE
