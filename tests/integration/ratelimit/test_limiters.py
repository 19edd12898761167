"""GCRA limiters: the arithmetic on a fake clock, then the same cases on real Redis."""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import Awaitable

import pytest
from mqkit_redis.limiter import RedisLimiter

from mqkit.errors import ConfigurationError
from mqkit.ratelimit import LocalLimiter, Permit, Rate, RateLimitedError, acquire
from tests.support.ratelimit import Clock
from tests.support.services import CLUSTER_URLS, store_params

REDIS = os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("200/s", 200.0), ("30/m", 0.5), ("5/100ms", 50.0), ("1/2h", 1 / 7200), (12, 12.0)],
)
def test_rates_parse(text: str | int, per_second: float) -> None:
    assert math.isclose(Rate.parse(text).per_second, per_second)


@pytest.mark.parametrize("text", ["", "fast", "10", "10/", "-1/s", "0/s", "1/0s", "10/y"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        Rate.parse(text)


def test_a_burst_passes_at_once_then_one_per_interval() -> None:
    clock = Clock()
    limiter = LocalLimiter("10/s", burst=3, clock=clock)
    waits = [limiter.reserve_now().wait for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2])
    clock.now += 10  # a quiet spell refills the burst, no more
    assert [limiter.reserve_now().wait for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_a_refused_reservation_books_nothing() -> None:
    clock = Clock()
    limiter = LocalLimiter("10/s", burst=1, clock=clock)
    assert limiter.reserve_now(max_wait=0).granted
    refused = limiter.reserve_now(max_wait=0)
    assert not refused.granted and refused.wait == pytest.approx(0.1)
    assert not limiter.reserve_now(max_wait=0).granted  # still 0.1 s, not pushed back
    clock.now += 0.1
    assert limiter.reserve_now(max_wait=0).granted


def test_keys_are_independent() -> None:
    limiter = LocalLimiter("1/s", burst=1, clock=Clock())
    assert limiter.reserve_now("a", max_wait=0).granted
    assert limiter.reserve_now("b", max_wait=0).granted
    assert not limiter.reserve_now("a", max_wait=0).granted


async def test_acquire_waits_or_raises_at_its_deadline() -> None:
    limiter = LocalLimiter("20/s", burst=1)
    started = time.monotonic()
    for _ in range(5):
        await acquire(limiter)
    assert 0.17 <= time.monotonic() - started < 0.5  # 4 intervals of 50 ms
    with pytest.raises(RateLimitedError) as info:
        for _ in range(3):
            await acquire(limiter, timeout=0.01)
    assert 0 < info.value.retry_after <= 0.05


# -- Redis -----------------------------------------------------------------------------------


def redis_limiter(url: str = REDIS, **options: object) -> RedisLimiter:
    return RedisLimiter(url, name=f"test-{uuid.uuid4().hex[:8]}", **options)  # type: ignore[arg-type]


async def timed(call: Awaitable[Permit]) -> tuple[Permit, float, float]:
    """The permit, and when (monotonic) the call started and ended: the limiter read its
    clock somewhere in between."""
    started = time.monotonic()
    permit = await call
    return permit, started, time.monotonic()


@pytest.mark.parametrize("server", store_params(["redis", "redis-sentinel", "redis-cluster"]))
async def test_redis_limiter_books_bursts_and_intervals_on_the_server_clock(server: str) -> None:
    limiter = redis_limiter(
        REDIS if server == "redis" else CLUSTER_URLS[server], rate="10/s", burst=3
    )
    try:
        calls = [await timed(limiter.reserve()) for _ in range(5)]
        assert [p.wait for p, _, _ in calls[:3]] == [0, 0, 0]
        # Slot 4 is booked 0.1 s after the first reservation's clock reading, slot 5 0.2 s:
        # each wait is that less the time gone since, which the call times bound.
        (_, first_start, first_end) = calls[0]
        for (permit, start, end), offset in zip(calls[3:], (0.1, 0.2), strict=True):
            assert offset - (end - first_start) - 1e-6 <= permit.wait, (permit, offset)
            assert permit.wait <= offset - (start - first_end) + 1e-6, (permit, offset)
        refused, start, end = await timed(limiter.reserve(max_wait=0))
        assert not refused.granted
        assert 0.3 - (end - first_start) - 1e-6 <= refused.wait <= 0.3
        other = await limiter.reserve("other-key", max_wait=0)
        assert other.granted and other.wait == 0
    finally:
        await limiter.close()


async def test_redis_limiter_is_one_limit_for_many_clients() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    limiters = [RedisLimiter(REDIS, rate="50/s", burst=5, name=name) for _ in range(3)]
    try:
        started = time.monotonic()
        await asyncio.gather(*(acquire(limiters[i % 3]) for i in range(30)))
        elapsed = time.monotonic() - started
        # 5 at once, then 25 more at 50/s: 0.5 s for all of them together (three separate
        # limits would take 0.1 s). The upper bound only leaves room for a loaded machine.
        assert 0.45 <= elapsed < 2.0, elapsed
    finally:
        for limiter in limiters:
            await limiter.close()


@pytest.mark.parametrize("on_outage", ["pause", "local"])
async def test_an_unreachable_redis_pauses_or_falls_back(on_outage: str) -> None:
    limiter = RedisLimiter(
        "redis://127.0.0.1:1/0",
        rate="100/s",
        burst=4,
        name="down",
        on_outage=on_outage,  # type: ignore[arg-type]
        workers=2,
        outage_retry=0.2,
    )
    try:
        permit, origin, _ = await timed(limiter.reserve(max_wait=0.1))
        assert limiter.in_outage
        if on_outage == "pause":
            assert not permit.granted and permit.wait == 0.2
            with pytest.raises(RateLimitedError):
                await acquire(limiter, timeout=0.5)
        else:  # rate / workers = 50/s with burst 4 // 2 = 2
            assert permit.granted
            calls = [await timed(limiter.reserve()) for _ in range(3)]
            (first, _, _), (second, _, end) = calls[0], calls[1]
            assert first.wait == 0  # the burst's second slot, then 1/50 s apart
            assert 0.02 - (end - origin) - 1e-6 <= second.wait <= 0.02 + 1e-6
    finally:
        await limiter.close()


async def test_redis_limiter_charges_a_cost_per_slot() -> None:
    limiter = redis_limiter(rate="10/s", burst=5)
    try:
        first, first_start, _ = await timed(limiter.reserve(cost=5))
        assert first.wait == 0  # the whole burst
        permit, _, end = await timed(limiter.reserve(cost=3))  # 3 slots of 0.1 s
        assert permit.granted and 0.3 - (end - first_start) - 1e-6 <= permit.wait <= 0.3
        refused, _, end = await timed(limiter.reserve(cost=2, max_wait=0.1))
        assert not refused.granted and 0.5 - (end - first_start) - 1e-6 <= refused.wait <= 0.5
    finally:
        await limiter.close()
