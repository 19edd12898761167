"""Conformance cases, publishing and consuming: round trip, volume, topics, consumer groups,
continuing after close, concurrent subscribe and close, size limits, closing, the readiness
check. (Settling, redelivery, order, delays and replay are in delivery.py.)"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import pydantic
import pytest

import mqkit
from mqkit.testing.conformance.fixtures import require
from mqkit.testing.waiting import drain, nothing_arrives, receive


class Order(pydantic.BaseModel):
    id: int
    item: str


# 1. Round trip -------------------------------------------------------------------------------


async def test_round_trip_keeps_id_key_headers_and_body(broker: mqkit.Broker, topic: str) -> None:
    async with await broker.subscribe(topic, group="g") as sub:
        sent = [
            await broker.publish(
                topic,
                f"body {i} \u00e9\u2603".encode(),
                key=f"k{i % 7}",
                headers={"n": str(i), "traceparent": "00-abc-def-01"},
            )
            for i in range(100)
        ]
        got = await receive(sub, 100)
    by_id = {d.message.id: d.message for d in got}
    assert len(by_id) == 100
    for m in sent:
        r = by_id[m.id]
        assert (r.topic, r.key, r.body, dict(r.headers)) == (m.topic, m.key, m.body, m.headers)
        assert r.attempt == 1
        assert abs(r.timestamp - m.timestamp) < 1.0


@pytest.mark.parametrize(
    ("payload", "annotation", "expected"),
    [
        (b"\x00\xffraw", bytes, b"\x00\xffraw"),
        ("h\u00e9llo", str, "h\u00e9llo"),
        ({"a": [1, 2], "b": None}, dict, {"a": [1, 2], "b": None}),
        (Order(id=1, item="book"), Order, Order(id=1, item="book")),
        ({"id": 2, "item": "pen"}, Order, Order(id=2, item="pen")),
        ([1, 2, 3], list[int], [1, 2, 3]),
    ],
    ids=["bytes", "str", "json", "model", "json-as-model", "list"],
)
async def test_content_types_decode_to_annotation(
    broker: mqkit.Broker, topic: str, payload: Any, annotation: Any, expected: Any
) -> None:
    async with await broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, payload)
        (d,) = await receive(sub, 1)
    assert d.message.decode(annotation) == expected


async def test_invalid_body_raises_decode_error(broker: mqkit.Broker, topic: str) -> None:
    async with await broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, {"id": "not a number"})
        (d,) = await receive(sub, 1)
    with pytest.raises(mqkit.DecodeError, match="id"):
        d.message.decode(Order)


async def test_empty_body(broker: mqkit.Broker, topic: str) -> None:
    async with await broker.subscribe(topic, group="g") as sub:
        sent = await broker.publish(topic, b"")
        (d,) = await receive(sub, 1)
    assert d.message.body == b"" and d.message.id == sent.id


# 2. Volume ----------------------------------------------------------------------------------


async def test_volume_20_publishers_10000_messages(broker: mqkit.Broker, topic: str) -> None:
    async with await broker.subscribe(topic, group="g", prefetch=500) as sub:

        async def publisher(p: int) -> list[str]:
            ids = []
            for i in range(500):
                m = await broker.publish(topic, f"{p}-{i}".encode())
                ids.append(m.id)
            return ids

        sent = [i for ids in await asyncio.gather(*(publisher(p) for p in range(20))) for i in ids]
        got = await receive(sub, 10_000, timeout=120)
        extra = await drain(sub, idle=0.5)
    counts = collections.Counter(d.message.id for d in got + extra)
    assert set(counts) == set(sent)
    redelivered = {d.message.id for d in got + extra if d.message.attempt > 1}
    duplicates = {i for i, c in counts.items() if c > 1}
    assert duplicates <= redelivered, "a message arrived twice without a redelivery"


async def test_batch_publish(broker: mqkit.Broker, topic: str) -> None:
    async with await broker.subscribe(topic, group="g", prefetch=500) as sub:
        batch = [mqkit.Message.create(topic, {"i": i}, key=str(i % 3)) for i in range(2000)]
        await broker.publish_batch(batch)
        got = await receive(sub, 2000, timeout=60)
    assert {d.message.id for d in got} == {m.id for m in batch}


# 3. Topics are isolated ---------------------------------------------------------------------


async def test_topics_are_isolated(broker: mqkit.Broker, topic: str) -> None:
    other = topic + "-other"
    async with (
        await broker.subscribe(topic, group="g") as a,
        await broker.subscribe(other, group="g") as b,
    ):
        for i in range(20):
            await broker.publish(topic, f"a{i}")
            await broker.publish(other, f"b{i}")
        got_a = await receive(a, 20)
        got_b = await receive(b, 20)
        assert await nothing_arrives(a, 0.3) and await nothing_arrives(b, 0.3)
    assert {d.message.body[:1] for d in got_a} == {b"a"}
    assert {d.message.body[:1] for d in got_b} == {b"b"}


# 4. Consumer groups -------------------------------------------------------------------------


async def test_consumer_groups_share_and_fan_out(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "consumer_groups")
    members = [await broker.subscribe(topic, group="workers", prefetch=5) for _ in range(3)]
    other = await broker.subscribe(topic, group="audit")
    sent = {(await broker.publish(topic, f"m{i}")).id for i in range(300)}

    shares: list[list[str]] = [[] for _ in members]

    async def work(i: int) -> None:
        for d in await drain(members[i], idle=1.0):
            shares[i].append(d.message.id)
            await asyncio.sleep(0.001)  # some work, so that the load spreads

    await asyncio.gather(*(work(i) for i in range(3)))
    audit = await receive(other, 300)
    for s in [*members, other]:
        await s.close()
    union = [i for share in shares for i in share]
    assert sorted(union) == sorted(sent), "the group's shares must add up to all, once each"
    assert sum(1 for share in shares if share) >= 2, f"no competition: {list(map(len, shares))}"
    assert {d.message.id for d in audit} == sent


# 7. Continue after close --------------------------------------------------------------------


async def test_continue_after_close(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "consumer_groups")
    async with await broker.subscribe(topic, group="g"):  # the group exists from here on
        batch = [mqkit.Message.create(topic, f"m{i}") for i in range(5000)]
        await broker.publish_batch(batch)
    seen: list[str] = []
    for _ in range(5):
        async with await broker.subscribe(topic, group="g", prefetch=200) as sub:
            seen += [d.message.id for d in await receive(sub, 1000, timeout=60)]
    async with await broker.subscribe(topic, group="g") as sub:
        seen += [d.message.id for d in await drain(sub, idle=0.5)]
    assert set(seen) == {m.id for m in batch}
    # Every read was acked before its subscriber closed: nothing may come twice.
    assert len(seen) == len(set(seen)), "closing must hand back, not duplicate"


# 8. Concurrent subscribe and close ----------------------------------------------------------


async def test_concurrent_subscribe_and_close(broker: mqkit.Broker, topic: str) -> None:
    before = {t for t in asyncio.all_tasks() if not t.done()}

    async def churn(i: int) -> None:
        sub = await broker.subscribe(topic, group=f"churn{i % 3}")
        await asyncio.sleep(0.01 * (i % 4))
        await sub.close()

    await asyncio.gather(*(churn(i) for i in range(10)))
    async with await broker.subscribe(topic, group="final") as sub:
        sent = {(await broker.publish(topic, f"m{i}")).id for i in range(50)}
        got = await receive(sub, 50)
    assert {d.message.id for d in got} == sent
    await asyncio.sleep(0.05)
    leaked = {t for t in asyncio.all_tasks() if not t.done()} - before
    leaked.discard(asyncio.current_task())
    names = sorted(t.get_name() for t in leaked)
    assert not [n for n in names if "fetch" in n or "lease" in n], names


# 10. Size limit -----------------------------------------------------------------------------


async def test_one_mebibyte_round_trips_and_oversize_raises(
    broker: mqkit.Broker, topic: str
) -> None:
    body = bytes(range(256)) * 4096
    assert len(body) == 1024 * 1024
    async with await broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, body)
        (d,) = await receive(sub, 1, timeout=30)
        assert d.message.body == body
        with pytest.raises(mqkit.MessageTooLargeError) as info:
            await broker.publish(topic, b"x" * (broker.max_message_bytes + 1))
        assert info.value.limit == broker.max_message_bytes
        assert await nothing_arrives(sub, 0.3)


async def test_size_limit_is_configurable(make_url: Any, topic: str) -> None:
    async with mqkit.connect(make_url("max_message_bytes=1KiB")) as broker:
        assert broker.max_message_bytes == 1024
        with pytest.raises(mqkit.MessageTooLargeError):
            await broker.publish(topic, b"x" * 1025)


# 14. Close ----------------------------------------------------------------------------------


async def test_publish_after_close_raises_and_close_is_idempotent(url: str, topic: str) -> None:
    broker = await mqkit.connect(url).start()
    sub = await broker.subscribe(topic, group="g")
    t0 = time.monotonic()
    await broker.close()
    await broker.close()
    assert time.monotonic() - t0 < 5.0
    with pytest.raises(mqkit.ClosedError, match="closed"):
        await broker.publish(topic, "late")
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(sub), 1.0)
    await sub.close()


async def test_invalid_topic_is_refused(broker: mqkit.Broker) -> None:
    with pytest.raises(mqkit.InvalidTopicError):
        await broker.publish("has space", "x")
    with pytest.raises(mqkit.InvalidTopicError):
        await broker.subscribe("")


async def test_settling_twice_is_a_no_op(broker: mqkit.Broker, topic: str) -> None:
    async with await broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, "once")
        (d,) = await receive(sub, 1)
        await d.ack()
        await d.nack()
        assert await nothing_arrives(sub, 0.3)


async def test_check_answers_only_while_started(url: str) -> None:
    """What a readiness probe asks (`/readyz`): the broker answers now. Taking it down is
    each backend's failover suite's business; here, before start and after close."""
    broker = mqkit.connect(url)
    with pytest.raises(mqkit.BrokerUnavailableError, match="not started"):
        await broker.check()
    async with broker:
        await broker.check()
        await broker.check()
    with pytest.raises(mqkit.BrokerUnavailableError, match="closed"):
        await broker.check()
