"""Producer-side limits: a paced publish rate, and a bound on publishes in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest

import mqkit
from mqkit.ratelimit import (
    LocalLimiter,
    PacedPublisher,
    PublishBackpressureError,
    RateLimitedError,
)
from tests.support.ratelimit import Clock
from tests.support.waiting import receive


@pytest.fixture
async def broker() -> AsyncIterator[mqkit.Broker]:
    async with mqkit.connect("memory://") as b:
        yield b


def test_a_batch_costs_one_slot_per_message() -> None:
    limiter = LocalLimiter("10/s", burst=5, clock=Clock())
    assert limiter.reserve_now(cost=5).wait == 0  # the whole burst at once
    assert limiter.reserve_now(cost=1).wait == pytest.approx(0.1)
    assert limiter.reserve_now(cost=3).wait == pytest.approx(0.4)  # its last slot's wait
    refused = limiter.reserve_now(cost=2, max_wait=0.1)
    assert not refused.granted and refused.wait == pytest.approx(0.6)


async def test_publishes_are_paced_and_all_arrive(broker: mqkit.Broker) -> None:
    publisher = PacedPublisher(broker, LocalLimiter("100/s", burst=10))
    sub = await broker.subscribe("paced", group="g")
    started = time.monotonic()
    sent = [(await publisher.publish("paced", {"n": i})).id for i in range(40)]
    await publisher.publish_batch([mqkit.Message.create("paced", b"") for _ in range(20)])
    took = time.monotonic() - started
    assert 0.45 <= took < 1.0, took  # 50 after the burst of 10 at 100/s
    got = await receive(sub, 60)
    assert set(sent) <= {d.message.id for d in got}
    await sub.close()


async def test_over_the_rate_past_the_timeout_raises_at_once(broker: mqkit.Broker) -> None:
    publisher = PacedPublisher(broker, LocalLimiter("1/s", burst=2), timeout=0.5)
    await publisher.publish("paced", b"1")
    await publisher.publish("paced", b"2")
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as info:
        await publisher.publish("paced", b"3")
    assert time.monotonic() - started < 0.1  # did not wait in vain
    assert 0.5 < info.value.retry_after <= 1.0


async def test_in_flight_publishes_are_bounded(broker: mqkit.Broker) -> None:
    gate = asyncio.Event()
    publish_batch = broker.publish_batch

    async def slow(messages: Sequence[mqkit.Message], *, delay: float | None = None) -> None:
        await gate.wait()
        await publish_batch(messages, delay=delay)

    broker.publish_batch = slow  # type: ignore[method-assign]
    publisher = PacedPublisher(broker, max_in_flight=3, timeout=0.3)
    pending = [asyncio.create_task(publisher.publish("bounded", b"x")) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert publisher.in_flight == 3
    with pytest.raises(PublishBackpressureError):
        await publisher.publish("bounded", b"one too many")
    gate.set()
    await asyncio.gather(*pending)
    assert publisher.in_flight == 0
    await publisher.publish("bounded", b"room again")
