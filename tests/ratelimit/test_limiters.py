"""GCRA limiters: the arithmetic on a fake clock, then the same cases on real Redis."""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid

import pytest

from mqkit.errors import ConfigurationError
from mqkit.ratelimit import LocalLimiter, Rate, RateLimitedError, acquire
from mqkit.ratelimit.redis import RedisLimiter

REDIS = os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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


def redis_limiter(**options: object) -> RedisLimiter:
    return RedisLimiter(REDIS, name=f"test-{uuid.uuid4().hex[:8]}", **options)  # type: ignore[arg-type]


async def test_redis_limiter_books_bursts_and_intervals_on_the_server_clock() -> None:
    limiter = redis_limiter(rate="10/s", burst=3)
    try:
        waits = [(await limiter.reserve()).wait for _ in range(5)]
        assert waits[:3] == [0, 0, 0]
        # The server's clock moves between calls: each wait is its interval less that.
        assert 0.08 <= waits[3] <= 0.1 and 0.18 <= waits[4] <= 0.2
        refused = await limiter.reserve(max_wait=0)
        assert not refused.granted and 0.2 < refused.wait <= 0.3
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
        # 5 at once, then 25 more at 50/s: 0.5 s for all of them together.
        assert 0.45 <= elapsed < 0.9, elapsed
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
        permit = await limiter.reserve(max_wait=0.1)
        assert limiter.in_outage
        if on_outage == "pause":
            assert not permit.granted and permit.wait == 0.2
            with pytest.raises(RateLimitedError):
                await acquire(limiter, timeout=0.5)
        else:  # rate / workers = 50/s with burst 4 // 2 = 2
            assert permit.granted
            waits = [(await limiter.reserve()).wait for _ in range(3)]
            assert waits[0] == 0 and waits[1] == pytest.approx(0.02, abs=0.005)
    finally:
        await limiter.close()


async def test_redis_limiter_charges_a_cost_per_slot() -> None:
    limiter = redis_limiter(rate="10/s", burst=5)
    try:
        assert (await limiter.reserve(cost=5)).wait == 0
        permit = await limiter.reserve(cost=3)
        assert permit.granted and 0.28 <= permit.wait <= 0.3
        refused = await limiter.reserve(cost=2, max_wait=0.1)
        assert not refused.granted and 0.48 <= refused.wait <= 0.5
    finally:
        await limiter.close()
