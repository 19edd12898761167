"""Adaptive concurrency (AIMD): the arithmetic, then a subscriber finding a downstream's
capacity from latency, and backing off errors."""

from __future__ import annotations

import asyncio
import time

import pytest

import mqkit
from mqkit.adaptive import AdaptiveConcurrency, AimdLimit
from tests.support.waiting import until


async def test_additive_increase_per_round_multiplicative_decrease_once_a_round() -> None:
    aimd = AimdLimit(AdaptiveConcurrency(latency_target=1.0, initial=4), maximum=10)
    for _ in range(4):  # a good round of 4: one more
        await aimd.acquire()
        await aimd.release(ok=True, latency=0.1)
    assert aimd.limit == 5
    for _ in range(2):  # two failures in one round (of the new limit, 2): one cut
        await aimd.acquire()
        await aimd.release(ok=False, latency=0.1)
    assert aimd.limit == 2
    for _ in range(2):
        await aimd.acquire()
    assert aimd.in_flight == 2
    with pytest.raises(TimeoutError):  # the limit holds
        await asyncio.wait_for(aimd.acquire(), 0.05)
    await aimd.release(ok=True, latency=2.0)  # slow: trouble, a round after the cut
    assert aimd.limit == 1


def test_bad_settings_are_refused() -> None:
    for bad in ({"minimum": 0}, {"decrease": 1.0}, {"latency_target": 0}):
        with pytest.raises(ValueError):
            AdaptiveConcurrency(**bad)  # type: ignore[arg-type]


async def test_a_subscriber_finds_the_concurrency_a_slowing_downstream_can_take() -> None:
    # The downstream answers in 10 ms per request in progress: over the 60 ms target
    # beyond 6 at once. A fixed concurrency of 32 would run every call at ~320 ms.
    in_progress = 0
    latencies: list[float] = []
    limits: list[int] = []
    async with mqkit.connect("memory://") as broker:
        app = mqkit.App(broker=broker)

        @app.subscriber("calls", concurrency=32, adaptive=AdaptiveConcurrency(latency_target=0.06))
        async def call(message: mqkit.Message) -> None:
            nonlocal in_progress
            in_progress += 1
            started = time.monotonic()
            await asyncio.sleep(0.01 * in_progress)
            in_progress -= 1
            latencies.append(time.monotonic() - started)
            limits.append(app.subscribers[0].stats.concurrency_limit)

        stats = app.subscribers[0].stats
        async with app.running():
            await broker.publish_batch([mqkit.Message.create("calls", b"") for _ in range(600)])
            await until(lambda: stats.handled >= 600, 60)
    later = sorted(latencies[300:])
    print(f"limit over time: {limits[::50]}, median latency of the second half: "
          f"{later[len(later) // 2] * 1000:.0f} ms")  # fmt: skip
    assert stats.retried == stats.dead_lettered == 0
    # Settled at the downstream's capacity (6 within the target; README: between 4 and 6),
    # not at 32; a loaded machine stretches the sleeps, which only pushes the limit lower.
    assert max(limits[300:]) <= 7, limits[300:]
    assert later[len(later) // 2] < 0.06 * 1.25  # the target, with room for a busy loop


async def test_errors_make_it_back_off_and_nothing_is_lost() -> None:
    in_progress = 0
    async with mqkit.connect("memory://") as broker:
        app = mqkit.App(broker=broker, retry=mqkit.RetryPolicy(base_delay=0.01, max_delay=0.05))

        @app.subscriber("calls", concurrency=16, adaptive=AdaptiveConcurrency(initial=16))
        async def call(message: mqkit.Message) -> None:
            nonlocal in_progress
            in_progress += 1
            try:
                await asyncio.sleep(0.005)
                if in_progress > 4:
                    raise ConnectionError("the downstream refuses over 4 at once")
            finally:
                in_progress -= 1

        stats = app.subscribers[0].stats
        async with app.running():
            await broker.publish_batch([mqkit.Message.create("calls", b"") for _ in range(300)])
            await until(lambda: stats.handled >= 300, 60)
    assert stats.handled == 300 and stats.dead_lettered == 0
    assert stats.concurrency_limit <= 8
