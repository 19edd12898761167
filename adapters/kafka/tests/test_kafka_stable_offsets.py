"""An exactly-once subscription's new owner reads the partition's committed offset as Kafka
will have it once the last transaction's commit is applied, not the one before it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mqkit_kafka.stable_offsets import stable_committed

KAFKA = os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092").removeprefix("kafka://")


@contextlib.asynccontextmanager
async def clients() -> AsyncIterator[
    tuple[str, TopicPartition, AIOKafkaProducer, AIOKafkaConsumer]
]:
    """A fresh group and partition, with a transactional producer and a consumer of the group
    (the topic made first: an offset commit naming a missing topic waits for it)."""
    topic, group = f"stable-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    plain = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await plain.start()
    try:
        await plain.send_and_wait(topic, b"x")
    finally:
        await plain.stop()
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, transactional_id=f"t-{group}", enable_idempotence=True
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        yield group, TopicPartition(topic, 0), producer, consumer
    finally:
        await consumer.stop()
        await producer.stop()


@pytest.mark.timeout(120)
async def test_the_offset_a_transaction_committed_is_read_right_after_it() -> None:
    async with clients() as (group, tp, producer, consumer):
        read = []
        for n in range(1, 101):
            async with producer.transaction():
                await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(n, "")}, group)
                await producer.send(tp.topic, b"y")
            read.append(await stable_committed(consumer, group, tp))
    # aiokafka's own consumer.committed() read the one before in 84 of 200 here.
    assert read == list(range(1, 101))


@pytest.mark.timeout(60)
async def test_an_offset_left_pending_is_waited_for_only_so_long() -> None:
    """A commit that no transaction's end will settle (seen after a broker restart) must not
    hold a new owner forever: after `patience` it goes on from the last stable offset."""
    async with clients() as (group, tp, producer, consumer):
        async with producer.transaction():
            await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(5, "")}, group)
        await producer.begin_transaction()  # left open: its offset 7 stays pending
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(7, "")}, group)
        started = time.monotonic()
        read = await asyncio.wait_for(stable_committed(consumer, group, tp, patience=2), 30)
        waited = time.monotonic() - started
        await producer.abort_transaction()
    assert (read, waited >= 2) == (5, True)
