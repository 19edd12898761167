"""The conformance suite: one set of cases that every backend passes, per its capabilities.

Modelled on Watermill's universal Pub/Sub tests; the cases are listed in docs/design.md. Each
case runs once per backend (see targets.py); a case a backend's flags do not claim is skipped
with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from typing import Any

import pydantic
import pytest

import mqkit
from tests.support.conformance import require
from tests.support.waiting import drain, nothing_arrives, receive


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


# 5. Nack ------------------------------------------------------------------------------------


async def test_nacked_messages_are_handled_later(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "redelivery")
    async with await broker.subscribe(topic, group="g") as sub:
        sent = {(await broker.publish(topic, f"m{i}")).id for i in range(100)}
        nacked: set[str] = set()
        handled: set[str] = set()
        async with asyncio.timeout(20):
            while handled != sent:
                d = await anext(sub)
                if len(nacked) < 2 and d.message.id not in nacked and d.message.attempt == 1:
                    nacked.add(d.message.id)
                    await d.nack()
                    continue
                handled.add(d.message.id)
                await d.ack()
    assert handled == sent and len(nacked) == 2


# 6. No ack ----------------------------------------------------------------------------------


async def test_unacked_messages_go_to_another_consumer(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "redelivery", "consumer_groups")
    first = await broker.subscribe(topic, group="g", prefetch=10)
    sent = {(await broker.publish(topic, f"m{i}")).id for i in range(10)}
    held = await receive(first, 10, ack=False)
    assert {d.message.id for d in held} == sent
    await first.close()  # stops without acking
    async with await broker.subscribe(topic, group="g") as second:
        again = await receive(second, 10)
    assert {d.message.id for d in again} == sent
    # Kafka cannot know a record was delivered to a consumer that stopped without
    # committing, so only "at least the first attempt" holds on every backend.
    print("ATTEMPTS", broker.url, sorted({d.message.attempt for d in again}))
    assert all(d.message.attempt >= 1 for d in again)


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
    leaked.discard(asyncio.current_task())  # type: ignore[arg-type]
    names = sorted(t.get_name() for t in leaked)
    assert not [n for n in names if "fetch" in n or "lease" in n], names


# 9. Per-key order ---------------------------------------------------------------------------


async def test_order_per_key_across_nack_and_competing_consumers(
    broker: mqkit.Broker, topic: str
) -> None:
    require(broker, "ordered_by_key")
    members = [await broker.subscribe(topic, group="g", prefetch=20) for _ in range(3)]
    batch = [mqkit.Message.create(topic, str(i), key=f"key{i % 16}") for i in range(1000)]
    await broker.publish_batch(batch)
    expected = collections.defaultdict(list)
    for m in batch:
        expected[m.key].append(m.id)
    to_nack = {batch[100].id, batch[517].id}
    handled: dict[str | None, list[str]] = collections.defaultdict(list)

    async def work(sub: mqkit.Subscription) -> None:
        while True:
            try:
                d = await asyncio.wait_for(anext(sub), 1.0)
            except TimeoutError:
                return
            if d.message.id in to_nack and d.message.attempt == 1:
                await d.nack()
                continue
            await asyncio.sleep(0)  # let the others interleave
            handled[d.message.key].append(d.message.id)
            await d.ack()

    await asyncio.gather(*(work(s) for s in members))
    for s in members:
        await s.close()
    assert dict(handled) == dict(expected)


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


# 11. Delayed delivery -----------------------------------------------------------------------


async def test_delayed_delivery(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "delayed_delivery")
    async with await broker.subscribe(topic, group="g") as sub:
        start = time.monotonic()
        await broker.publish(topic, "later", delay=1.0)
        await broker.publish(topic, "now")
        (first,) = await receive(sub, 1)
        assert first.message.body == b"now", "a delayed message must not block others"
        (later,) = await receive(sub, 1, timeout=3.0)
        elapsed = time.monotonic() - start
    assert later.message.body == b"later"
    assert 1.0 <= elapsed < 3.0


async def test_nack_with_delay(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "redelivery", "delayed_delivery")
    async with await broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, "retry me")
        (d,) = await receive(sub, 1, ack=False)
        t0 = time.monotonic()
        await d.nack(delay=0.5)
        await broker.publish(topic, "meanwhile")
        (other,) = await receive(sub, 1)
        assert other.message.body == b"meanwhile"
        (again,) = await receive(sub, 1, timeout=3)
        waited = time.monotonic() - t0
    assert again.message.id == d.message.id and again.message.attempt == 2
    # Never early; the upper bound leaves a loaded machine its scheduling delays.
    assert 0.5 <= waited < 0.5 + 1.5


# 12. Replay ---------------------------------------------------------------------------------


async def test_new_group_from_beginning_sees_earlier_messages(
    broker: mqkit.Broker, topic: str
) -> None:
    require(broker, "replay")
    async with await broker.subscribe(topic, group="first") as sub:
        sent = {(await broker.publish(topic, f"m{i}")).id for i in range(20)}
        await receive(sub, 20)
    async with await broker.subscribe(topic, group="late", start="earliest") as late:
        got = await receive(late, 20)
    assert {d.message.id for d in got} == sent


async def test_new_group_from_latest_skips_earlier_messages(
    broker: mqkit.Broker, topic: str
) -> None:
    await broker.publish(topic, "before")
    async with await broker.subscribe(topic, group=f"late-{uuid.uuid4().hex}", start="latest") as s:
        await broker.publish(topic, "after")
        (d,) = await receive(s, 1)
        assert d.message.body == b"after"
        assert await nothing_arrives(s, 0.3)


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


# Dead-letter queue --------------------------------------------------------------------------


async def test_reject_dead_letters_with_reason(broker: mqkit.Broker, topic: str) -> None:
    async with (
        await broker.subscribe(topic, group="g") as sub,
        await broker.subscribe(topic + ".dlq", group="ops") as dlq,
    ):
        sent = await broker.publish(topic, b"bad", key="k", headers={"h": "v"})
        (d,) = await receive(sub, 1, ack=False)
        before = time.time()
        await d.reject(ValueError("nope"))
        (dead,) = await receive(dlq, 1)
        assert await nothing_arrives(sub, 0.3)
    m = dead.message
    assert (m.id, m.key, m.body) == (sent.id, None, b"bad")
    assert m.headers["mqkit-original-key"] == "k"
    assert m.headers["h"] == "v"
    assert m.headers["mqkit-error"] == "ValueError: nope"
    assert m.headers["mqkit-original-topic"] == topic
    assert m.headers["mqkit-group"] == "g"
    assert m.headers["mqkit-attempts"] == "1"
    assert m.headers["mqkit-error-type"] == "ValueError"
    first = float(m.headers["mqkit-first-failed-at"])
    assert before - 0.01 <= first <= float(m.headers["mqkit-last-failed-at"]) <= time.time()


async def test_dead_letter_records_the_first_failure_across_nacks(
    broker: mqkit.Broker, topic: str
) -> None:
    require(broker, "redelivery")
    async with (
        await broker.subscribe(topic, group="g") as sub,
        await broker.subscribe(topic + ".dlq", group="ops") as dlq,
    ):
        await broker.publish(topic, b"keeps failing", key="k")
        (d,) = await receive(sub, 1, ack=False)
        before = time.time()
        await d.nack(0.2)
        after = time.time()
        (d,) = await receive(sub, 1, ack=False)
        await d.nack(0.2)
        (d,) = await receive(sub, 1, ack=False)
        assert d.message.attempt == 3
        await d.reject(ValueError("third time"))
        (dead,) = await receive(dlq, 1)
    headers = dead.message.headers
    first, last = float(headers["mqkit-first-failed-at"]), float(headers["mqkit-last-failed-at"])
    # Stamped during the first nack (50 ms either side for a server's clock on this host).
    assert before - 0.05 <= first <= after + 0.05, (before, first, after)
    assert last - first >= 0.35
    assert headers["mqkit-attempts"] == "3"
