"""Conformance cases, settling in bulk and batch handlers: `mqkit.ack_all` settles what it is
given and nothing else; an App subscriber with `batch=` gets lists, acks them, dead-letters
an undecodable body alone and retries only what `BatchFailed` names."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pydantic

import mqkit
from mqkit.testing.conformance.fixtures import require
from mqkit.testing.conformance.lag import lag_until
from mqkit.testing.waiting import drain, nothing_arrives, receive, until
from mqkit.wire import dlq_topic

_FAST = mqkit.RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


class Item(pydantic.BaseModel):
    n: int


def _group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


async def _nothing_left(broker: mqkit.Broker, topic: str, group: str) -> None:
    """The group has handled everything: its lag is none (where the backend tells it; a
    message leased and never acked counts, as does one handed back), and nothing comes."""
    if broker.capabilities.lag:
        await lag_until(broker, topic, group, lambda lag: lag.unhandled == 0)
    async with await broker.subscribe(topic, group=group) as again:
        assert await nothing_arrives(again, 1.0)


# 18. Bulk settlement --------------------------------------------------------------------------


async def test_ack_all_settles_every_delivery(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "redelivery", "consumer_groups")
    group = _group()
    first = await broker.subscribe(topic, group=group, prefetch=100)
    await broker.publish_batch([mqkit.Message.create(topic, f"m{i}") for i in range(60)])
    held = await receive(first, 60, ack=False)
    await mqkit.ack_all(held)
    await mqkit.ack_all(held)  # settled already: nothing happens, as for ack
    await first.close()
    await _nothing_left(broker, topic, group)


async def test_ack_all_leaves_the_rest_unsettled(broker: mqkit.Broker, topic: str) -> None:
    """Acked in bulk: the first five and the eighth of ten held, while the twenty after
    them are still fetched and not taken. The others must come back: on RabbitMQ this is
    what tells a multiple-ack that covers only the run it may from one that covers more."""
    require(broker, "redelivery", "consumer_groups")
    group = _group()
    first = await broker.subscribe(topic, group=group, prefetch=30)
    sent = [mqkit.Message.create(topic, f"m{i}") for i in range(30)]
    await broker.publish_batch(sent)
    held = await receive(first, 10, ack=False)
    acked = [*held[:5], held[7]]
    await mqkit.ack_all(acked)
    await first.close()
    async with await broker.subscribe(topic, group=group, prefetch=30) as again:
        back = {d.message.id for d in await drain(again, idle=2.0)}
    left = {m.id for m in sent} - {d.message.id for d in acked}
    assert left <= back, f"not redelivered: {sorted(left - back)}"
    if broker.capabilities.selective_ack:
        assert back == left
    else:  # Kafka commits an offset: the eighth comes back with the sixth and seventh
        assert {d.message.id for d in held[:5]}.isdisjoint(back)


# 19. Batch handlers ---------------------------------------------------------------------------


async def test_batch_handler_gets_lists_and_acks_them(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "consumer_groups")
    app = mqkit.App(broker=broker, retry=_FAST)
    group = _group()
    batches: list[list[int]] = []

    @app.subscriber(topic, group=group, batch=100, batch_timeout=0.2)
    async def handle(items: list[Item], messages: list[mqkit.Message]) -> None:
        assert [i.n for i in items] == [Item.model_validate_json(m.body).n for m in messages]
        batches.append([i.n for i in items])

    async with app.running():
        await broker.publish_batch([mqkit.Message.create(topic, {"n": i}) for i in range(1000)])
        await until(lambda: sum(map(len, batches)) >= 1000, timeout=30)
    got = [n for b in batches for n in b]
    assert sorted(got) == list(range(1000)), "each message once"
    assert max(map(len, batches)) <= 100
    assert max(map(len, batches)) > 1, "delivered in batches"
    assert app.subscribers[0].stats.handled == 1000
    if broker.capabilities.redelivery:  # acked: not delivered to the group again
        await _nothing_left(broker, topic, group)


async def test_batch_dead_letters_an_undecodable_body_alone(
    broker: mqkit.Broker, topic: str
) -> None:
    require(broker, "consumer_groups")
    app = mqkit.App(broker=broker, retry=_FAST)
    group = _group()
    handled: list[int] = []

    @app.subscriber(topic, group=group, batch=50, batch_timeout=0.2)
    async def handle(items: list[Item]) -> None:
        handled.extend(i.n for i in items)

    dlq = await broker.subscribe(dlq_topic(topic), group="ops")
    async with app.running():
        bodies: list[Any] = [{"n": i} for i in range(50)]
        bodies[17] = {"n": "seventeen"}
        await broker.publish_batch([mqkit.Message.create(topic, b) for b in bodies])
        (dead,) = await receive(dlq, 1, timeout=30)
        await until(lambda: len(handled) >= 49, timeout=30)
    await dlq.close()
    assert sorted(handled) == [i for i in range(50) if i != 17]
    assert dead.message.decode(dict) == {"n": "seventeen"}
    assert dead.message.headers["mqkit-error"].startswith("DecodeError")
    assert app.subscribers[0].stats.dead_lettered == 1


async def test_batch_failed_retries_only_what_it_names(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "consumer_groups", "redelivery")
    app = mqkit.App(broker=broker, retry=_FAST)
    seen: dict[int, list[int]] = {}

    @app.subscriber(topic, group=_group(), batch=40, batch_timeout=0.2)
    async def handle(items: list[Item], messages: list[mqkit.Message]) -> None:
        for item, message in zip(items, messages, strict=True):
            seen.setdefault(item.n, []).append(message.attempt)
        odd = [i for i, m in zip(items, messages, strict=True) if i.n % 2 and m.attempt == 1]
        if odd:
            raise mqkit.BatchFailed(odd) from ConnectionError("downstream refused the odd ones")

    async with app.running():
        await broker.publish_batch([mqkit.Message.create(topic, {"n": i}) for i in range(40)])
        await until(lambda: all(len(seen.get(n, ())) == 2 for n in range(1, 40, 2)), timeout=30)
        await asyncio.sleep(0.3)  # room for a wrongful redelivery of the even ones to show
    assert all(seen[n] == [1] for n in range(0, 40, 2)), "the even ones were acked"
    assert all(seen[n] == [1, 2] for n in range(1, 40, 2)), "the odd ones came back once"
    stats = app.subscribers[0].stats
    assert (stats.handled, stats.retried, stats.dead_lettered) == (40, 20, 0)


async def test_a_raising_batch_handler_retries_then_dead_letters_each(
    broker: mqkit.Broker, topic: str
) -> None:
    require(broker, "consumer_groups", "redelivery")
    app = mqkit.App(broker=broker, retry=mqkit.RetryPolicy(max_attempts=2, base_delay=0.01))
    attempts: list[int] = []

    @app.subscriber(topic, group=_group(), batch=10, batch_timeout=0.2)
    async def handle(messages: list[mqkit.Message]) -> None:
        attempts.extend(m.attempt for m in messages)
        raise ValueError("never works")

    dlq = await broker.subscribe(dlq_topic(topic), group="ops")
    async with app.running():
        await broker.publish_batch([mqkit.Message.create(topic, f"m{i}") for i in range(10)])
        dead = await receive(dlq, 10, timeout=30)
    await dlq.close()
    assert sorted(attempts) == [1] * 10 + [2] * 10
    assert {d.message.headers["mqkit-error"] for d in dead} == {"ValueError: never works"}
    stats = app.subscribers[0].stats
    assert (stats.retried, stats.dead_lettered) == (10, 10)
