"""Chaos: a Kafka restarted under a group's consumer. Until the restarted coordinator has
loaded the group's offsets, it answers OffsetFetch with an error for the whole group and no
partitions, which aiokafka (0.14) reads as nothing committed: a partition assigned then
would start over from `start=`. mqkit's consumers (mqkit_kafka/committed.py) wait instead,
so every read of the committed offset, however soon after the restart, is the one
committed."""

from __future__ import annotations

import asyncio
import collections
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

import mqkit
from tests.support.services import URLS, services

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
async def test_the_committed_offset_reads_the_same_through_a_restart() -> None:
    topic, group = f"committed-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    async with mqkit.connect(URLS["kafka"] + "?partitions=1") as broker:
        await broker.publish(topic, b"x")
        sub = await broker.subscribe(topic, group=group)
        consumer = sub._consumer  # type: ignore[attr-defined]
        tp = TopicPartition(topic, 0)
        await consumer.commit({tp: OffsetAndMetadata(1, "")})
        read: collections.Counter[object] = collections.Counter()
        bounce = asyncio.create_task(services("kill", "kafka"))
        await bounce
        bounce = asyncio.create_task(services("up", "kafka"))
        while not bounce.done() or read[1] < 20:  # and on, until it answers again
            try:
                read[await asyncio.wait_for(consumer.committed(tp), 5)] += 1
            except TimeoutError:
                read["no answer within 5 s"] += 1
            await asyncio.sleep(0.05)
        await bounce
        await sub.close()
    print(f"\nreads of the committed offset through a restart: {dict(read)}")
    assert None not in read, read
