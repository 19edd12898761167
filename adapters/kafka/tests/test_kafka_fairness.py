"""A subscriber with slow handlers moves every partition on at once: aiokafka hands out a
partition's fetched records (up to a megabyte) before the next one's, so a subscription that
took them as they came worked through one partition while the others waited."""

from __future__ import annotations

import asyncio
import collections
import os
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner

import mqkit
from mqkit.testing.waiting import wait_until

KAFKA = os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
PARTITIONS = 3
EACH = 5_000  # a partition's records: well within one fetch of it


def keys_of(partition: int, n: int) -> list[str]:
    """`n` keys that Kafka's default partitioner puts in `partition`."""
    partitioner, all_ = DefaultPartitioner(), list(range(PARTITIONS))
    keys = (f"k{i}" for i in range(10_000))
    return [k for k in keys if partitioner(k.encode(), all_, all_) == partition][:n]


@pytest.mark.timeout(120)
async def test_slow_handlers_take_every_partition_in_turn() -> None:
    topic = f"fair-{uuid.uuid4().hex[:8]}"
    url = f"{KAFKA}?partitions={PARTITIONS}"
    keys = {p: keys_of(p, 10) for p in range(PARTITIONS)}
    partition_of = {k: p for p, ks in keys.items() for k in ks}
    async with mqkit.connect(url) as broker:
        for ks in keys.values():  # all published before the subscriber's first fetch
            await broker.publish_batch(
                [mqkit.Message.create(topic, b"x" * 100, key=ks[n % 10]) for n in range(EACH)]
            )
    handled: collections.Counter[int] = collections.Counter()
    enough = asyncio.Event()
    app = mqkit.App(url, shutdown_timeout=2)

    @app.subscriber(topic, group=f"g-{topic}", concurrency=4)
    async def handle(message: mqkit.Message) -> None:
        await asyncio.sleep(0.005)
        assert message.key is not None
        handled[partition_of[message.key]] += 1
        if handled.total() >= 600:
            enough.set()

    async with app.running():
        await asyncio.wait_for(enough.wait(), 90)
    # A fair share is 200 each; taken one partition after another, one had all 600.
    assert min(handled[p] for p in range(PARTITIONS)) >= 100, handled


@pytest.mark.timeout(120)
async def test_a_partition_stuck_behind_one_key_holds_only_its_share() -> None:
    """Its records wait in memory behind the key's first; were they let fill all the room for
    held records, fetching would pause for every partition until that key moved on."""
    topic = f"fair-{uuid.uuid4().hex[:8]}"
    url = f"{KAFKA}?partitions={PARTITIONS}"
    (stuck,), others = keys_of(0, 1), keys_of(1, 10)
    released, others_done = asyncio.Event(), asyncio.Event()
    handled: collections.Counter[str] = collections.Counter()
    app = mqkit.App(url, shutdown_timeout=2)

    @app.subscriber(topic, group=f"g-{topic}", concurrency=4)
    async def handle(message: mqkit.Message) -> None:
        if message.key == stuck:
            await released.wait()
        handled[message.key or ""] += 1
        if sum(handled[k] for k in others) == 200:
            others_done.set()

    async with mqkit.connect(url) as broker, app.running():
        await broker.publish_batch([mqkit.Message.create(topic, b"x", key=stuck)] * 12_000)
        [sub] = app.broker.subscriptions  # type: ignore[attr-defined]
        # Readiness: the stuck key's records are held (a share of them at least) ...
        held = lambda: sum(len(q) for q in sub._key_queues.values())  # noqa: E731
        await wait_until(lambda: held() >= 1_000, 30, "the stuck key's records held")
        # ... before the other partition has any: taken in turn, they may still be fetched.
        await broker.publish_batch(
            [mqkit.Message.create(topic, b"x", key=others[n % 10]) for n in range(200)]
        )
        try:
            await asyncio.wait_for(others_done.wait(), 30)
        finally:
            released.set()
