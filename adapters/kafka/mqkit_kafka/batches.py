"""Producing many records at once: in record batches built here, one run per partition,
instead of a `send()` per record (about 30 µs each in the worker's and the relay's
profiles, where a batch append costs a few).

The partition is the one `send()` would choose: the producer's default partitioner, murmur2
of the key for a keyed record (so a key's records stay in one partition, in order), and for
keyless records one partition for the whole call, picked at random among the available, as
Kafka's own client does with its sticky partitioner.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

Record = tuple[str, dict[str, Any]]  # topic, send()'s keyword arguments

_partitioner = DefaultPartitioner()


async def produce(producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
    """Hand `records` to the producer and wait until the broker has all of them."""
    if len(records) == 1:
        topic, record = records[0]
        await (await producer.send(topic, **record))
        return
    futures: list[asyncio.Future[Any]] = []
    for (topic, partition), run in (await _by_partition(producer, records)).items():
        batch = producer.create_batch()
        for record in run:
            if _append(batch, record):
                continue
            if batch.record_count():  # full: send it, go on in a new one
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if _append(batch, record):
                    continue
            # Larger than a batch holds: on its own, as send() makes room for it.
            futures.append(await producer.send(topic, partition=partition, **record))
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)


def _append(batch: Any, record: dict[str, Any]) -> bool:
    appended = batch.append(
        key=record["key"],
        value=record["value"],
        timestamp=record["timestamp_ms"],
        headers=record["headers"],
    )
    return appended is not None


async def _by_partition(
    producer: AIOKafkaProducer, records: Sequence[Record]
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The records of each (topic, partition), in the order given."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    partitions: dict[str, tuple[list[int], int]] = {}
    for topic, record in records:
        if topic not in partitions:
            every = sorted(await producer.partitions_for(topic))
            available = list(producer.client.cluster.available_partitions_for_topic(topic))
            partitions[topic] = (every, random.choice(available or every))
        every, sticky = partitions[topic]
        key = record["key"]
        partition = sticky if key is None else _partitioner(key, every, every)
        runs.setdefault((topic, partition), []).append(record)
    return runs
