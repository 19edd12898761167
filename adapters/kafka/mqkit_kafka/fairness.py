"""Which fetched records the subscription takes next: a share of its room from each partition
in turn, and none from a partition that holds its share of what may wait in memory.

aiokafka's getmany() hands out one partition's fetched records before the next one's, in
the order its fetches came back, and fetches a partition again only once all of its records
were taken. A handler slower than a fetch is large (a fetch is up to a megabyte of a
partition) then works on one partition for as long as its fetch lasts while the others
wait: with 10 ms handlers, 27 s before a second partition had any; in the exactly-once
zombie case one partition moved on 79 records in 110 s while the two others of its member
were copied to the end. Taken in turn, every partition with records moves on at once.

Held records (fetched, waiting behind an unsettled record of their key or for their time)
are shared out the same way: a partition whose few busy keys hold its share is passed over
until they catch up, rather than filling MAX_HELD and pausing every partition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sized
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

MAX_HELD = 10_000  # held in all, with a transaction's outputs, before fetching pauses
MIN_SHARE = 1_000  # what a partition may hold however many share MAX_HELD
Fetched = dict[TopicPartition, list[Any]]


def held_per_partition(
    key_queues: Mapping[tuple[TopicPartition, str], Sized], waiting: Iterable[TopicPartition]
) -> Counter[TopicPartition]:
    """Records held per partition: queued behind their keys, and `waiting` for their time."""
    held: Counter[TopicPartition] = Counter(waiting)
    for (tp, _), queue in key_queues.items():
        held[tp] += len(queue)
    return held


def takeable(
    assigned: Collection[TopicPartition], held: Counter[TopicPartition]
) -> list[TopicPartition]:
    """The assigned partitions not holding their share (MAX_HELD split among them, so a lone
    partition may hold all of it), in a fixed order for `RoundRobin`."""
    share = max(MIN_SHARE, MAX_HELD // max(1, len(assigned)))
    return sorted((tp for tp in assigned if held[tp] < share), key=lambda tp: tp[:2])


class RoundRobin:
    """Takes up to `room` fetched records: a share from each partition, starting one further
    each time, then what room is left from those that had more."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._turn = 0

    async def take(self, partitions: list[TopicPartition], room: int) -> Fetched:
        if not partitions:  # none assigned yet (a rebalance): getmany() waits for them
            return await self._wait(partitions, room)
        start = self._turn % len(partitions)
        self._turn += 1
        order = partitions[start:] + partitions[:start]
        each = max(1, room // len(partitions))
        taken: Fetched = {}
        for tp in order:
            if room > 0:
                room -= await self._take(taken, tp, min(each, room))
        for tp in [tp for tp in order if len(taken.get(tp, ())) == each]:
            if room > 0:
                room -= await self._take(taken, tp, room)
        return taken or await self._wait(partitions, room)

    async def _wait(self, partitions: list[TopicPartition], room: int) -> Fetched:
        """Whichever partition's records come first, or nothing after 200 ms."""
        fetched: Fetched = await self._consumer.getmany(
            *partitions, timeout_ms=200, max_records=room
        )
        return fetched

    async def _take(self, taken: Fetched, tp: TopicPartition, most: int) -> int:
        records = (await self._consumer.getmany(tp, timeout_ms=0, max_records=most)).get(tp)
        if records:
            taken.setdefault(tp, []).extend(records)
        return len(records or ())
