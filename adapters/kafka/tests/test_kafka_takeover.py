"""An exactly-once subscription takes over each partition on its own: one whose committed
offset Kafka holds pending waits alone, while the others are copied and the member stays
in its group (a takeover waiting in the rebalance callback held every partition, and the
member missed the group's next rebalance)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata

import mqkit

KAFKA = os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")


@pytest.mark.timeout(120)
async def test_a_partition_whose_offset_is_pending_holds_up_only_itself() -> None:
    topic = f"takeover-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    url = f"{KAFKA}?partitions=2"
    everyone = [0, 1]
    key = next(  # a key of partition 1
        k
        for k in (f"k{i}" for i in range(100))
        if DefaultPartitioner()(k.encode(), everyone, everyone) == 1
    )
    async with mqkit.connect(url) as broker:
        await broker.publish_batch([mqkit.Message.create(topic, b"first", key=key)])
    # Another producer's transaction, left open, holds the group's offset of partition 0
    # pending; the partition's own producer cannot end it.
    other = AIOKafkaProducer(
        bootstrap_servers=KAFKA.removeprefix("kafka://"), transactional_id=f"other-{group}"
    )
    await other.start()
    try:
        await other.begin_transaction()
        await other.send_offsets_to_transaction(
            {TopicPartition(topic, 0): OffsetAndMetadata(0, "")}, group
        )
        handled = asyncio.Event()
        app = mqkit.App(url, shutdown_timeout=2)

        @app.subscriber(topic, group=group, exactly_once=True)
        async def handle(message: mqkit.Message) -> None:
            handled.set()

        async with app.running():
            await asyncio.wait_for(handled.wait(), 60)
            [sub] = app.broker.subscriptions  # type: ignore[attr-defined]
            assert sub.transactions.admits(TopicPartition(topic, 1), 0)
            assert not sub.transactions.admits(TopicPartition(topic, 0), 0)  # still waiting
        await other.abort_transaction()
    finally:
        await other.stop()
