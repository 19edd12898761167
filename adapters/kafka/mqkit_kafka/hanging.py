"""Hanging offset commits: a transaction's offset commit that no marker will ever end, and
how an exactly-once subscription ends it.

Kafka's transaction coordinator skips the markers of a partition it cannot find in its
metadata, taking it for deleted. Right after a Kafka restart its metadata can still lack
topics that exist: seen here after SIGKILLing the single node, in its log as "Couldn't
find leader endpoint for partitions Set(__consumer_offsets-0, eos-out-…-0) … likely
deleted already and hence can be skipped". The transaction is then complete for the
coordinator, but in those partitions its records are still open: its offset commit stays
pending (OffsetFetch answers UNSTABLE_OFFSET_COMMIT for good) and its output is held back
from read_committed readers. The next marker for the same producer id in a partition ends
them, with that marker's outcome: the producer's next transaction to write there.

A new owner of the input partition fences its transactional id and finds the offset
pending. It cannot wait (nothing else will end it), nor go on from the last stable offset:
the transaction's output, committed or still open, becomes visible with the new owner's
first commit to the same partitions, so its records would be copied twice (seen: 26, 52
and 58 duplicated). So the new owner commits the hanging offset: it commits a transaction
from the same producer id whose marker reaches the same __consumer_offsets partition,
which makes the pending offset the committed one (Kafka Streams, one producer for many
partitions, ends such an offset the same way with its next commit). The transaction
carries only an offset in a companion group of that partition, so that nothing of the
group itself is overwritten.

What this cannot undo: a transaction Kafka had decided to abort, some of whose partitions
got their abort marker before the restart while its offset commit was skipped. That needs
an abort in progress at the moment of the crash, and is left to the operator
(`kafka-transactions.sh find-hanging`).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

OFFSETS_TOPIC = "__consumer_offsets"


async def end_hanging(
    producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, group: str, tp: TopicPartition
) -> None:
    """Commit whatever offset of `group` the producer's id left pending, in the
    __consumer_offsets partition of `group`."""
    await producer.begin_transaction()
    await commit_through_companion(producer, consumer, group, tp)


async def commit_through_companion(
    producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, group: str, tp: TopicPartition
) -> None:
    """Commit the producer's transaction with an offset of `tp` in `group`'s companion
    group (only there), so that its marker reaches `group`'s offsets as well."""
    companion = await companion_group(consumer, group)
    note = f"mqkit: ended an offset commit of group {group} left hanging by Kafka"
    await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(0, note)}, companion)
    await producer.commit_transaction()


async def companion_group(consumer: AIOKafkaConsumer, group: str) -> str:
    """A group id of its own whose offsets live in the same __consumer_offsets partition
    as `group`'s, so that one transaction's marker reaches both."""
    cluster = await consumer._client.fetch_all_metadata()
    partitions = len(cluster.partitions_for_topic(OFFSETS_TOPIC) or ())
    if not partitions:
        raise LookupError(f"Kafka did not list {OFFSETS_TOPIC}")
    home = offsets_partition(group, partitions)
    for n in range(100 * partitions):  # each name lands on a given partition 1 in N times
        companion = f"{group}.mqkit-hanging.{n}"
        if offsets_partition(companion, partitions) == home:
            return companion
    raise LookupError(f"no companion group id found for {group!r}")  # pragma: no cover


def offsets_partition(group: str, partitions: int) -> int:
    """The __consumer_offsets partition of `group`, as Kafka computes it: the absolute
    value of Java's String.hashCode, modulo the partition count."""
    h = 0
    units = group.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    signed = h - (1 << 32) if h >= 1 << 31 else h
    return 0 if signed == -(1 << 31) else abs(signed) % partitions
