"""Chaos 3: 10% of handlers fail on their first two attempts; one message always fails; one
cannot be decoded. All 1,000 good ones are handled and none reaches the DLQ; the failing one
reaches it after exactly max_attempts with its error; the undecodable one at once."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import pydantic
import pytest

import mqkit
from mqkit.dlq import DeadLetters
from tests.support.chaos import REPORTS, Tally
from tests.support.services import URLS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TOTAL = 1_000
POLICY = mqkit.RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2)


class Order(pydantic.BaseModel):
    n: int


def flaky(message_id: str) -> bool:
    return hashlib.sha256(message_id.encode()).digest()[0] < 26  # ~10%


def url_for(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return f"memory://{uuid.uuid4().hex}"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return URLS[backend]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis", "rabbitmq", "kafka"])
async def test_retries_then_dead_letters(backend: str, tmp_path: Path) -> None:
    topic = f"chaos-retry-{uuid.uuid4().hex[:8]}"
    tally = Tally(f"{backend} 10% fail twice, 1 poison, 1 undecodable, {TOTAL} good")
    attempts: dict[str, list[int]] = {}
    failed_at: dict[str, float] = {}
    app = mqkit.App(url_for(backend, tmp_path), retry=POLICY)

    @app.subscriber(topic, group="workers", concurrency=16)
    async def handle(order: Order, message: mqkit.Message) -> None:
        attempts.setdefault(message.id, []).append(message.attempt)
        if order.n < 0:
            failed_at.setdefault(message.id, time.time())
            raise ValueError(f"order {order.n} can never be processed")
        if flaky(message.id) and message.attempt <= 2:
            raise ConnectionError("downstream hiccup")
        tally.received[message.id] += 1

    async with app.running():
        broker = app.broker
        undecodable = await broker.publish(topic, b"{not json")
        poison = await broker.publish(topic, {"n": -1})
        batch = [mqkit.Message.create(topic, {"n": i}) for i in range(TOTAL)]
        await broker.publish_batch(batch)
        tally.sent = {m.id for m in batch}
        took = await wait_until(lambda: tally.sent <= tally.received.keys(), 120, "all handled")
        stats = app.subscribers[0].stats
        await wait_until(lambda: stats.dead_lettered == 2, 30, "two dead letters")
        dead = {d.id: d for d in await DeadLetters(broker, topic).list()}

    flakies = sum(1 for m in batch if flaky(m.id))
    tally.report(
        flaky=flakies,
        retried=stats.retried,
        **{"dead-lettered": sorted(d.error_type for d in dead.values()), "took": f"{took:.1f}s"},
    )
    assert tally.lost == 0 and tally.duplicated == 0
    assert set(dead) == {poison.id, undecodable.id}
    assert dead[poison.id].attempts == POLICY.max_attempts
    assert attempts[poison.id] == [1, 2, 3, 4]
    assert dead[poison.id].error == "ValueError: order -1 can never be processed"
    first, last = dead[poison.id].first_failed_at, dead[poison.id].last_failed_at
    assert first is not None and last is not None
    assert abs(first - failed_at[poison.id]) < 0.5 and first <= last
    assert dead[undecodable.id].attempts == 1 and dead[undecodable.id].error_type == "DecodeError"
    assert stats.retried == 2 * flakies + POLICY.max_attempts - 1
    for m in batch:
        assert attempts[m.id] == ([1, 2, 3] if flaky(m.id) else [1])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis", "rabbitmq", "kafka"])
async def test_a_failing_message_holds_up_nothing(backend: str, tmp_path: Path) -> None:
    """One consumer, one handler at a time: a message that fails first and is retried after
    0.5, 1 and 2 s does not stand in front of the 999 published after it."""
    topic = f"chaos-poison-{uuid.uuid4().hex[:8]}"
    policy = mqkit.RetryPolicy(max_attempts=4, base_delay=0.5, jitter=False)
    app = mqkit.App(url_for(backend, tmp_path), retry=policy)
    done_at: dict[str, float] = {}

    @app.subscriber(topic, group="workers", concurrency=1)
    async def handle(order: Order, message: mqkit.Message) -> None:
        if order.n < 0:
            raise ValueError("never")
        done_at[message.id] = time.monotonic()

    async with app.running():
        poison = await app.broker.publish(topic, {"n": -1})
        batch = [mqkit.Message.create(topic, {"n": i}) for i in range(999)]
        await app.broker.publish_batch(batch)
        stats = app.subscribers[0].stats
        await wait_until(lambda: stats.dead_lettered == 1, 60, "poison dead-lettered")
        dead_at = time.monotonic()
        await wait_until(lambda: len(done_at) == 999, 60, "all good ones handled")
    last_good = max(done_at.values())
    line = (
        f"{backend} poison first, then 999 (one handler at a time): the last good one was "
        f"handled {dead_at - last_good:.2f}s before the poison reached the DLQ"
    )
    print(f"\nCHAOS {line}")
    REPORTS.append(line)
    assert poison.id not in done_at
    assert last_good < dead_at
