"""Conformance cases, lag: what `broker.lag(topic, group)` reports is what the group has
not handled, and, where the backend claims it, what is in flight and how old the oldest is.
Counts are read until they settle (acks are written in the background on some backends)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import mqkit
from mqkit.testing.conformance.fixtures import require
from mqkit.testing.waiting import receive

N = 10


async def lag_until(
    broker: mqkit.Broker, topic: str, group: str, ok: Callable[[mqkit.Lag], bool]
) -> mqkit.Lag:
    """The group's lag once `ok` holds for it; fails with the last one after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        lag = await broker.lag(topic, group)
        if ok(lag):
            return lag
        assert time.monotonic() < deadline, f"lag never got there: {lag}"
        await asyncio.sleep(0.1)


async def test_lag_counts_what_the_group_has_not_handled(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "lag", "consumer_groups")
    claims = broker.capabilities
    # The group exists (RabbitMQ keeps nothing for a queue not yet declared), with no
    # consumer yet: RabbitMQ counts only what no consumer holds.
    await (await broker.subscribe(topic, group="g")).close()
    started = time.time()
    for i in range(N):
        await broker.publish(topic, f"m{i}")
    lag = await lag_until(broker, topic, "g", lambda lag: lag.unhandled == N)
    assert (lag.topic, lag.group) == (topic, "g")
    async with await broker.subscribe(topic, group="g", prefetch=5) as sub:
        held = await receive(sub, 4, ack=False)
        if claims.lag_in_flight:
            # What the subscription has fetched is in flight: the 4 received, and up to
            # the prefetch of 5.
            lag = await lag_until(broker, topic, "g", lambda lag: (lag.in_flight or 0) >= 4)
            assert lag.in_flight is not None and lag.in_flight <= 5, lag
            assert lag.unhandled == N, lag
        if claims.lag_age:
            assert lag.oldest_age is not None, lag
            assert 0 <= lag.oldest_age <= time.time() - started + 1, lag
        for delivery in held:
            await delivery.ack()
        if claims.lag_in_flight or not claims.selective_ack:  # Kafka: acks move the offset
            await lag_until(broker, topic, "g", lambda lag: lag.unhandled == N - 4)
        await receive(sub, N - 4)
        lag = await lag_until(broker, topic, "g", lambda lag: lag.unhandled == 0)
    assert lag.waiting == 0 and lag.in_flight in (0, None), lag
    if claims.lag_age:
        assert lag.oldest_age is None, lag


async def test_lag_of_a_group_not_yet_started_is_everything_retained(
    broker: mqkit.Broker, topic: str
) -> None:
    require(broker, "lag", "replay")
    for i in range(N):
        await broker.publish(topic, f"m{i}")
    lag = await lag_until(broker, topic, "newcomer", lambda lag: lag.unhandled == N)
    assert lag.in_flight in (0, None), lag


async def test_lag_counts_a_retry_waiting_on_its_delay(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "lag", "consumer_groups", "delayed_delivery", "lag_in_flight")
    async with await broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, "m")
        [delivery] = await receive(sub, 1, ack=False)
        await delivery.nack(delay=60)
        lag = await lag_until(broker, topic, "g", lambda lag: lag.in_flight == 0)
    assert lag.waiting == 1, lag
