"""A rate-limited subscriber holds back its fetch: bursts wait in the broker and drain at
the configured rate, with nothing nacked, retried, dead-lettered or lost for the limit."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator

import pytest

import mqkit
from tests.support.ratelimit import offer, per_second
from tests.support.waiting import receive, until

pytestmark = pytest.mark.slow


@pytest.fixture
async def broker() -> AsyncIterator[mqkit.Broker]:
    async with mqkit.connect("memory://") as b:
        yield b


async def test_100_per_s_with_burst_10_under_1000_per_s_for_10s(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker)
    handled: dict[str, float] = {}

    @app.subscriber("work", group="shaved", concurrency=16, rate="100/s", burst=10)
    async def work(message: mqkit.Message) -> None:
        handled[message.id] = time.monotonic()

    spec = app.subscribers[0]
    async with app.running():
        started = time.monotonic()
        sent = await offer(broker, "work", 1000, 10.0)
        elapsed = time.monotonic() - started
    windows = per_second(list(handled.values()))
    ideal = 10 + 100 * elapsed
    print(f"offered {len(sent)} in {elapsed:.2f}s, handled {len(handled)}, ideal {ideal:.0f}")
    print(f"per second: {windows}")
    assert all(n <= 110 for n in windows[1:]), windows
    assert abs(len(handled) - ideal) <= 0.05 * ideal
    assert spec.stats.retried == spec.stats.dead_lettered == 0
    # What the limit held back is still in the broker, every message of it.
    rest = await broker.subscribe("work", group="shaved")
    left = await receive(rest, len(sent) - len(handled), timeout=30)
    await rest.close()
    assert {d.message.id for d in left} | handled.keys() == set(sent)
    assert not {d.message.id for d in left} & handled.keys()


async def test_a_10x_burst_drains_completely_at_the_rate(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker)
    handled: collections.Counter[str] = collections.Counter()
    times: list[float] = []

    @app.subscriber("work", group="shaved", concurrency=8, rate="200/s", burst=20)
    async def work(message: mqkit.Message) -> None:
        handled[message.id] += 1
        times.append(time.monotonic())

    spec = app.subscribers[0]
    async with app.running():
        sent = await offer(broker, "work", 2000, 1.0)  # 10x the rate for a second
        await until(lambda: len(handled) >= len(sent), 30)
    windows = per_second(times)
    took = max(times) - min(times)
    ideal = (len(sent) - 20) / 200
    print(f"{len(sent)} drained in {took:.2f}s (ideal {ideal:.2f}s), per second: {windows}")
    assert set(handled) == set(sent) and max(handled.values()) == 1
    assert all(n <= 220 for n in windows[1:]), windows
    assert abs(took - ideal) <= 0.05 * ideal
    assert spec.stats.retried == spec.stats.dead_lettered == 0


def test_bad_limits_are_refused_at_declaration() -> None:
    app = mqkit.App("memory://")
    with pytest.raises(mqkit.ConfigurationError):
        app.subscriber("t", rate="fast")
    with pytest.raises(ValueError, match="limits_url"):
        app.subscriber("t", rate="10/s", rate_key="billing")
    with pytest.raises(ValueError, match="rate="):
        app.subscriber("t", rate_key="billing")


async def test_a_limit_per_key_lets_the_other_keys_go_on(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker)
    done: dict[str, list[float]] = {"a": [], "b": [], "c": []}

    @app.subscriber(
        "work", group="keyed", concurrency=8, rate="10/s", burst=1, rate_by=lambda m: m.key or ""
    )
    async def work(message: mqkit.Message) -> None:
        done[message.key or ""].append(time.monotonic())

    async with app.running():
        started = time.monotonic()
        await broker.publish_batch(
            [mqkit.Message.create("work", b"", key=k) for k in "abc" for _ in range(11)]
        )
        await until(lambda: sum(map(len, done.values())) >= 33, 30)
    # Each key at 10/s on its own: 11 each in about 1 s, side by side, not 3 s one after another.
    for key, times in done.items():
        took = max(times) - started
        assert 0.9 <= took <= 1.6, (key, took)
