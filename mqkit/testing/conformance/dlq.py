"""Dead-letter queue tools (mqkit.dlq) and the acking they rely on, on every backend."""

from __future__ import annotations

import asyncio

import mqkit
from mqkit.dlq import DeadLetters
from mqkit.testing.conformance.fixtures import require
from mqkit.testing.waiting import drain, nothing_arrives, receive


async def test_selective_ack_leaves_earlier_messages_pending(
    broker: mqkit.Broker, topic: str
) -> None:
    require(broker, "selective_ack")
    async with await broker.subscribe(topic, group="g", prefetch=10) as sub:
        sent = [await broker.publish(topic, f"m{i}".encode()) for i in range(3)]
        first, *rest = await receive(sub, 3, ack=False)
        for d in rest:
            await d.ack()
    async with await broker.subscribe(topic, group="g") as sub:
        (again,) = await receive(sub, 1)
        assert again.message.id == first.message.id == sent[0].id
        assert await nothing_arrives(sub, 0.5)


async def _dead_letter(broker: mqkit.Broker, topic: str) -> tuple[list[str], list[str]]:
    """Billing gives up on 4 messages and shipping on 2 others, all on one topic; returns
    (billing's ids, shipping's ids)."""
    async with (
        await broker.subscribe(topic, group="billing", prefetch=10) as billing,
        await broker.subscribe(topic, group="shipping", prefetch=10) as shipping,
    ):
        sent = [
            await broker.publish(topic, f"for-{who}-{i}".encode(), key=f"k{i}")
            for i, who in enumerate(["billing"] * 4 + ["shipping"] * 2)
        ]
        for group, sub in (("billing", billing), ("shipping", shipping)):
            for d in await receive(sub, 6, ack=False):
                if d.message.body.startswith(f"for-{group}".encode()):
                    await d.reject(RuntimeError(f"{group} cannot take {d.message.body!r}"))
                else:
                    await d.ack()
    return [m.id for m in sent[:4]], [m.id for m in sent[4:]]


async def test_list_show_replay_and_purge(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "durable", "consumer_groups")
    billing, shipping = await _dead_letter(broker, topic)
    dlq = DeadLetters(broker, topic, idle=1.5)

    listed = await dlq.list(group="billing")
    assert sorted(d.id for d in listed) == sorted(billing)
    assert {d.error_type for d in listed} == {"RuntimeError"}
    assert all(d.attempts == 1 and d.original_topic == topic for d in listed)
    assert len(await dlq.list()) == 6  # listing removed nothing
    shown = await dlq.get(shipping[0])
    assert shown is not None and shown.group == "shipping" and "shipping cannot" in shown.error

    async with (
        await broker.subscribe(topic, group="billing") as again,
        await broker.subscribe(topic, group="shipping") as other,
    ):
        replayed = await dlq.replay(ids=billing[:2])
        assert sorted(d.id for d in replayed) == sorted(billing[:2])
        back = await receive(again, 2)
        assert sorted(d.message.id for d in back) == sorted(billing[:2])
        for d in back:  # same id and body, attempts from 1, addressed to billing only
            assert d.message.attempt == 1
            assert d.message.key is not None and d.message.key.startswith("k")
            assert d.message.headers["mqkit-replay-group"] == "billing"
            assert "mqkit-error" not in d.message.headers
        # Other groups see the replay too (it is published to the topic); mqkit apps skip
        # it by the header.
        seen = await drain(other, idle=1.0)
        assert sorted(d.message.id for d in seen) == sorted(billing[:2])
        assert {d.message.headers.get("mqkit-replay-group") for d in seen} == {"billing"}

    remaining = sorted(d.id for d in await dlq.list())
    assert remaining == sorted(billing[2:] + shipping)
    purged = await dlq.purge(group="shipping")
    assert sorted(d.id for d in purged) == sorted(shipping)
    assert sorted(d.id for d in await dlq.list()) == sorted(billing[2:])
    assert len(await dlq.replay(group="billing")) == 2
    assert await dlq.list() == []


async def test_replayed_message_reaches_only_its_group_in_an_app(
    broker: mqkit.Broker, topic: str
) -> None:
    require(broker, "durable", "consumer_groups")
    handled: dict[str, list[str]] = {"billing": [], "shipping": []}
    app = mqkit.App(broker=broker, retry=mqkit.RetryPolicy(max_attempts=1))

    @app.subscriber(topic, group="billing")
    async def bill(message: mqkit.Message) -> None:
        if message.body == b"fail-once" and message.attempt == 1 and not handled["billing"]:
            handled["billing"].append("failed")
            raise RuntimeError("downstream down")
        handled["billing"].append(message.id)

    @app.subscriber(topic, group="shipping")
    async def ship(message: mqkit.Message) -> None:
        handled["shipping"].append(message.id)

    async with app.running():
        sent = await broker.publish(topic, b"fail-once")
        async with asyncio.timeout(20):
            while len(handled["shipping"]) < 1 or len(handled["billing"]) < 1:
                await asyncio.sleep(0.05)
        (dead,) = await DeadLetters(broker, topic).list(group="billing")
        assert dead.id == sent.id
        await DeadLetters(broker, topic).replay(group="billing")
        async with asyncio.timeout(20):
            while sent.id not in handled["billing"]:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
    assert handled == {"billing": ["failed", sent.id], "shipping": [sent.id]}
    shipping = next(s for s in app.subscribers if s.group == "shipping")
    assert shipping.stats.skipped == 1
