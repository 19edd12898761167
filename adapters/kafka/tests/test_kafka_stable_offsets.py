"""An exactly-once subscription's new owner reads the partition's committed offset as Kafka
will have it once the last transaction's commit is applied, not the one before it."""

from __future__ import annotations

import os
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mqkit_kafka.stable_offsets import stable_committed

KAFKA = os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092").removeprefix("kafka://")


@pytest.mark.timeout(120)
async def test_the_offset_a_transaction_committed_is_read_right_after_it() -> None:
    topic, group = f"stable-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, transactional_id=f"t-{group}", enable_idempotence=True
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False)
    plain = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await plain.start()
    try:
        await plain.send_and_wait(topic, b"x")  # the topic, before any commit names it
    finally:
        await plain.stop()
    await producer.start()
    await consumer.start()
    try:
        read = []
        for n in range(1, 101):
            async with producer.transaction():
                await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(n, "")}, group)
                await producer.send(topic, b"y")
            read.append(await stable_committed(consumer, group, tp))
    finally:
        await consumer.stop()
        await producer.stop()
    # aiokafka's own consumer.committed() read the one before in 84 of 200 here.
    assert read == list(range(1, 101))
