"""Conformance cases, transactions: what `broker.transaction()` publishes is seen all at once
when the block ends and never when it raises; other tasks publish as usual meanwhile; an
exactly-once subscriber's output is seen once per input, whatever its handler's failures
(the dead letter included); a backend that does not claim `native_transactions` refuses
with CapabilityError instead of pretending.

The cases publish with one key so that one partition (or queue) orders everything: a marker
published outside the transaction and received before the transaction's messages shows
they were held back, not merely slow."""

from __future__ import annotations

import asyncio
import collections
import contextvars

import pytest

import mqkit
from mqkit.testing.conformance.fixtures import require
from mqkit.testing.waiting import drain, nothing_arrives, receive, until
from mqkit.wire import dlq_topic

_FAST = mqkit.RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


async def _outside(broker: mqkit.Broker, topic: str, body: bytes) -> None:
    """Publish from a context that is in no transaction, as another task of the process."""
    publishing = broker.publish(topic, body, key="k")
    await asyncio.create_task(publishing, context=contextvars.Context())


# 20. Transactions ------------------------------------------------------------------------------


async def test_transaction_is_seen_all_at_once(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "native_transactions", "consumer_groups")
    async with await broker.subscribe(topic, group="g") as sub:
        async with broker.transaction():
            await broker.publish(topic, b"t1", key="k")
            await broker.publish_batch(
                [mqkit.Message.create(topic, f"t{i}", key="k") for i in range(2, 6)]
            )
            await _outside(broker, topic, b"marker")
            (marker,) = await receive(sub, 1)
            assert marker.message.body == b"marker"  # the five are held back
            assert await nothing_arrives(sub, 0.5)
        got = await receive(sub, 5)
    assert [d.message.body for d in got] == [f"t{i}".encode() for i in range(1, 6)]


async def test_transaction_that_raises_publishes_nothing(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "native_transactions", "consumer_groups")
    async with await broker.subscribe(topic, group="g") as sub:
        with pytest.raises(RuntimeError, match="handler failed"):
            async with broker.transaction():
                await broker.publish(topic, b"aborted 1", key="k")
                await broker.publish_batch([mqkit.Message.create(topic, b"aborted 2", key="k")])
                raise RuntimeError("handler failed")
        await broker.publish(topic, b"after", key="k")  # no transaction is open any more
        (after,) = await receive(sub, 1)
        assert after.message.body == b"after"
        assert await nothing_arrives(sub, 1.0)


async def test_transactions_commit_in_turn(broker: mqkit.Broker, topic: str) -> None:
    """Blocks in concurrent tasks each commit whole: 20 blocks of 5, all 100 seen, and each
    block's five together in its order."""
    require(broker, "native_transactions", "consumer_groups")

    async def block(n: int) -> None:
        async with broker.transaction():
            for i in range(5):
                await broker.publish(topic, f"{n}.{i}", key="k")
                await asyncio.sleep(0)  # let the other blocks interleave their publishes

    async with await broker.subscribe(topic, group="g") as sub:
        await asyncio.gather(*(block(n) for n in range(20)))
        got = [d.message.body.decode() for d in await receive(sub, 100)]
        assert await nothing_arrives(sub, 0.5)
    runs = [got[i : i + 5] for i in range(0, 100, 5)]
    assert all(run == [f"{run[0][:-2]}.{i}" for i in range(5)] for run in runs), runs
    assert sorted(run[0] for run in runs) == sorted(f"{n}.0" for n in range(20))


async def test_nested_transaction_is_refused(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "native_transactions", "consumer_groups")
    async with await broker.subscribe(topic, group="g") as sub:
        with pytest.raises(mqkit.TransactionError, match="open already"):
            async with broker.transaction():
                await broker.publish(topic, b"outer", key="k")
                async with broker.transaction():
                    await broker.publish(topic, b"inner", key="k")
        await broker.publish(topic, b"after", key="k")
        (after,) = await receive(sub, 1)
        assert after.message.body == b"after"  # the outer block aborted too


async def test_transaction_refused_without_native_transactions(broker: mqkit.Broker) -> None:
    if broker.capabilities.native_transactions:
        pytest.skip(f"{type(broker).__name__} claims native_transactions")
    with pytest.raises(mqkit.CapabilityError, match="native_transactions") as refused:
        broker.transaction()
    assert refused.value.flag == "native_transactions"


async def test_exactly_once_output_is_seen_once_per_input(broker: mqkit.Broker, topic: str) -> None:
    """Each handler publishes its copy and then fails its first attempt: the aborted copies
    never show, the second attempt's do, once each and in each key's order; an input that
    always fails shows only as its dead letter, once."""
    require(broker, "native_transactions", "consumer_groups")
    out = f"{topic}.out"
    app = mqkit.App(broker=broker, retry=_FAST)
    runs: collections.Counter[str] = collections.Counter()

    @app.subscriber(topic, group="copier", concurrency=8, exactly_once=True)
    async def copy(ctx: mqkit.Context, body: str) -> None:
        runs[body] += 1
        await ctx.publish(out, f"{body} try {ctx.message.attempt}", key=ctx.message.key)
        if ctx.message.attempt == 1 or body == "m13":
            raise RuntimeError(f"{body} failed")

    async with (
        await broker.subscribe(out, group="check") as copies,
        await broker.subscribe(dlq_topic(topic), group="ops") as dead,
    ):
        await broker.publish_batch(
            [mqkit.Message.create(topic, f"m{i}", key=f"k{i % 5}") for i in range(200)]
        )
        async with app.running():
            await until(lambda: len(runs) == 200 and runs["m13"] == 3, timeout=60)
            (dead_letter,) = await receive(dead, 1, timeout=30)
            got = [d.message for d in await receive(copies, 199, timeout=30)]
            assert await nothing_arrives(copies, 1.0)
            assert await nothing_arrives(dead, 0.5)
    assert dead_letter.message.body == b"m13"
    bodies = [m.body.decode() for m in got]
    assert sorted(bodies) == sorted(f"m{i} try 2" for i in range(200) if i != 13)
    for key in {m.key for m in got}:
        mine = [int(m.body.split()[0][1:]) for m in got if m.key == key]
        assert mine == sorted(mine), key


async def test_exactly_once_refused_without_native_transactions(
    broker: mqkit.Broker, topic: str
) -> None:
    if broker.capabilities.native_transactions:
        with pytest.raises(mqkit.ConfigurationError, match="named group"):
            await broker.subscribe(topic, exactly_once=True)
        return
    with pytest.raises(mqkit.CapabilityError, match="native_transactions"):
        await broker.subscribe(topic, group="g", exactly_once=True)
    app = mqkit.App(broker=broker)

    @app.subscriber(topic, group="g", exactly_once=True)
    async def handle(body: bytes) -> None: ...

    with pytest.raises(mqkit.CapabilityError, match="exactly_once"):
        async with app.running():
            pass
    async with await broker.subscribe(topic, group="g") as sub:  # nothing was left behind
        assert await drain(sub, idle=0.2) == []
