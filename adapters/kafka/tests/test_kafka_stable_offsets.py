"""An exactly-once subscription's new owner reads the partition's committed offset as Kafka
will have it once the last transaction's commit is applied, not the one before it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mqkit_kafka.hanging import commit_through_companion, offsets_partition
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


@pytest.mark.timeout(90)
async def test_an_offset_left_hanging_is_committed_by_a_marker_through_the_companion() -> None:
    """A commit that no marker of its own will end (Kafka skipped it after a restart) must
    not hold a new owner forever, nor be dropped: the next marker of the same producer id in
    that __consumer_offsets partition commits it. Here the producer's transaction is still
    open, so only a marker sent through the companion group can end it."""
    async with clients() as (group, tp, producer, consumer):
        async with producer.transaction():
            await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(5, "")}, group)
        await producer.begin_transaction()
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(7, "")}, group)
        read = await asyncio.wait_for(
            stable_committed(
                consumer,
                group,
                tp,
                on_hanging=lambda: commit_through_companion(producer, consumer, group, tp),
            ),
            60,
        )
    assert read == 7  # the last stable offset, 5, would copy the transaction's output again


@pytest.mark.parametrize(
    ("group", "partitions", "expected"),
    [
        ("hello", 50, 99162322 % 50),  # Java: "hello".hashCode() == 99162322
        ("polygenelubricants", 50, 0),  # hashCode() == Integer.MIN_VALUE, which abs() keeps
        ("copier-2d6c563b", 10, 0),  # where a Kafka 4.4 broker logged this group's offsets
    ],
)
def test_a_groups_offsets_partition_is_computed_as_kafka_does(
    group: str, partitions: int, expected: int
) -> None:
    assert offsets_partition(group, partitions) == expected
