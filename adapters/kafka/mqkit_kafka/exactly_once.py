"""Exactly-once subscriptions: what the handlers of a partition's records publish, and the
commit of that partition's offset, are one Kafka transaction.

- One transactional producer per input partition, its transactional id made of the group,
  topic and partition (`mqkit.<group>.<topic>.<partition>`). aiokafka's transactional offset
  commit predates KIP-447 (it carries no consumer group generation), so this is how zombies
  are fenced, as Kafka's design had it before that KIP: whoever is assigned the partition
  starts its producer, which fences the previous owner's and waits until the transaction
  that one left has ended, and only then reads the committed offset and seeks there (the
  consumer's own read of it may have come before the fence, and been overtaken by the old
  owner's last commit); the stable committed offset (stable_offsets.py), since an ended
  transaction's offsets are applied a little later. Records are admitted only from it on
  (`admits`): any fetched from an earlier position were the old owner's, output and all.
- That takeover runs in a task per partition, the partition paused until it is done, and
  not in the rebalance callback: after a Kafka restart it can wait many seconds, and a
  member waiting in the callback misses the next rebalance and is dropped from the group,
  then the next member to get the partition waits in turn.
- A delivery's output (its `publish`es, or a dead-letter or retry-topic copy) is staged
  with its offset when it is settled. A partition's commit takes the outputs of every offset
  below its commit point (offsets.py), in offset order, so the output keeps the input's order
  and never runs ahead of the offset committed with it: a record handled out of order waits,
  with its output, for the ones before it.
- Fenced (another member has the partition): the partition is dropped here; its records
  come back to whoever owns it, from the offset last committed.
- A transaction that fails (the broker away, a timeout) is dropped the same way, and the
  member asks the group to rebalance. Whether it committed is unknown, and so is whether
  this member still owns the partition: a process stopped past its session timeout (a
  zombie) wakes up to find its transaction timed out, and a producer it started again would
  fence the partition's new owner and let the zombie commit once more. Only the group can
  say who owns the partition; whoever it is assigned to fences the transaction left open,
  which ends it, and goes on from the offset committed: past the transaction's point if it
  committed, so its outputs are neither lost nor sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Literal, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from mqkit.broker import Start
from mqkit_kafka.batches import Record, produce
from mqkit_kafka.hanging import end_hanging
from mqkit_kafka.stable_offsets import stable_committed
from mqkit_kafka.transactions import ProducerSource, start_transactional, stop_quietly

log = logging.getLogger("mqkit.kafka")

Outcome = Literal["committed", "fenced", "lost"]  # the last two: the partition was dropped
T = TypeVar("T")


class PartitionTransactions:
    def __init__(
        self, source: ProducerSource, consumer: AIOKafkaConsumer, group: str, start: Start
    ) -> None:
        self._source = source
        self._consumer = consumer
        self.group = group
        self.start = start
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._outputs: dict[TopicPartition, dict[int, list[Record]]] = {}
        self._from: dict[TopicPartition, int] = {}  # the offset each partition starts at
        self._taking: dict[TopicPartition, asyncio.Task[None]] = {}  # not started yet
        self._committing = asyncio.Lock()  # the commit loop's and a rebalance's take turns
        self.staged = 0  # settled deliveries whose output waits for its transaction

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"mqkit.{self.group}.{tp.topic}.{tp.partition}"

    def admits(self, tp: TopicPartition, offset: int) -> bool:
        """Whether a fetched record is this member's to handle: its partition is assigned
        and fenced here, and the record is not below the offset that fencing found."""
        start = self._from.get(tp)
        return start is not None and offset >= start

    # -- assignment --------------------------------------------------------------------------

    async def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Take over newly assigned partitions, each in a task of its own: they stay paused
        until their previous owners are fenced and their start offsets known. Not in the
        rebalance callback, which a takeover that waits on Kafka would hold up: a member
        stuck there misses the group's next rebalance and is dropped from the group."""
        new = [tp for tp in partitions if tp not in self._producers and tp not in self._taking]
        self._consumer.pause(*new)
        for tp in new:
            task = asyncio.create_task(self._take_over(tp), name=f"mqkit-take-over-{tp}")
            task.add_done_callback(_log_failure)
            self._taking[tp] = task

    async def taken_over(self, within: float) -> None:
        """Wait until the partitions assigned so far are started (or revoked), `within`
        seconds at most: one can wait on Kafka for long, and the others go on meanwhile."""
        if self._taking:
            await asyncio.wait(list(self._taking.values()), timeout=within)

    async def _take_over(self, tp: TopicPartition) -> None:
        began = time.monotonic()
        self._producers[tp] = await self._retrying(tp, "the producer", self._started)
        fenced = time.monotonic() - began
        start = await self._start_offset(tp)
        # Always a seek: what the consumer fetched before the fence is not this member's,
        # and its position, moved past those records, must not be where it goes on from.
        self._consumer.seek(tp, start)
        self._from[tp] = start
        self._consumer.resume(tp)
        self._taking.pop(tp, None)
        # What a slow takeover after a rebalance is made of, for whoever has to tell.
        log.info(
            "mqkit: took over %s[%d]: previous owner fenced in %.1fs, started at %d after %.1fs",
            tp.topic,
            tp.partition,
            fenced,
            start,
            time.monotonic() - began,
        )

    async def _started(self, tp: TopicPartition) -> AIOKafkaProducer:
        producer = self._source.transactional_producer(self.transactional_id(tp))
        try:
            async with asyncio.timeout(self._source.publish_timeout + 5):
                await start_transactional(producer)
        except BaseException:
            await stop_quietly(producer)
            raise
        return producer

    async def revoked(self, partitions: Collection[TopicPartition]) -> None:
        """Let go of partitions (after their last commit): their producers and outputs."""
        taking = [t for tp in partitions if (t := self._taking.pop(tp, None))]
        for task in taking:
            task.cancel()
        await asyncio.gather(*taking, return_exceptions=True)
        producers = [p for tp in partitions if (p := self._producers.pop(tp, None))]
        for tp in partitions:
            self.staged -= len(self._outputs.pop(tp, {}))
            self._from.pop(tp, None)
        await asyncio.gather(*(stop_quietly(p) for p in producers))

    async def close(self) -> None:
        await self.revoked([*self._producers, *self._taking])

    # -- outputs and commits -----------------------------------------------------------------

    def stage(self, tp: TopicPartition, offset: int, records: list[Record]) -> None:
        """A settled delivery's output, for the transaction that commits past `offset`."""
        if not records:
            return  # the offset alone: every transaction commits that
        outputs = self._outputs.setdefault(tp, {})
        if offset not in outputs:
            self.staged += 1
        outputs[offset] = records

    async def commit(self, points: dict[TopicPartition, int]) -> dict[TopicPartition, Outcome]:
        """One transaction per partition, all at once: each partition's outputs below its
        point, and the point as its committed offset."""
        async with self._committing:
            tps = [tp for tp in points if tp in self._producers]
            outcomes = await asyncio.gather(*(self._commit(tp, points[tp]) for tp in tps))
        return dict(zip(tps, outcomes, strict=True))

    async def _commit(self, tp: TopicPartition, point: int) -> Outcome:
        outputs = self._outputs.get(tp, {})
        done = sorted(o for o in outputs if o < point)
        records = [record for offset in done for record in outputs[offset]]
        producer = self._producers[tp]
        try:
            async with asyncio.timeout(self._source.publish_timeout):
                for topic in {t for t, _ in records}:
                    await self._source.ensure_topic(topic)
                await producer.begin_transaction()
                await producer.send_offsets_to_transaction(
                    {tp: OffsetAndMetadata(point, "")}, self.group
                )
                if records:
                    await produce(producer, records)
                await producer.commit_transaction()
        except ProducerFenced:
            log.warning("mqkit: %s was fenced: another member owns it now", tp)
            await self.revoked([tp])
            return "fenced"
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning(
                "mqkit: the transaction of %s failed (%r): dropping the partition until the "
                "group assigns it again",
                tp,
                exc,
            )
            await self.revoked([tp])
            # aiokafka has no public call for this; its pin (<0.15) keeps the private one.
            self._consumer._coordinator.request_rejoin()
            return "lost"
        self._done(tp, done)
        return "committed"

    async def _start_offset(self, tp: TopicPartition) -> int:
        """The group's committed offset of `tp`, asked until Kafka answers (going on without
        it could hand out again what was committed, or send its outputs twice); where
        `start=` says if the group never committed one."""
        start = await self._retrying(tp, "the committed offset", self._stable_committed)
        if start is None:
            start = await self._retrying(tp, "the first offset", self._first_offset)
        return start

    async def _stable_committed(self, tp: TopicPartition) -> int | None:
        return await stable_committed(
            self._consumer, self.group, tp, on_hanging=lambda: self._end_hanging(tp)
        )

    async def _end_hanging(self, tp: TopicPartition) -> None:
        """End the offset commit Kafka left hanging for `tp` (hanging.py)."""
        try:
            async with asyncio.timeout(self._source.publish_timeout):
                await end_hanging(self._producers[tp], self._consumer, self.group, tp)
        except (KafkaError, OSError, TimeoutError):
            # The producer's transaction in an unknown state: a new one fences it.
            await stop_quietly(self._producers.pop(tp))
            self._producers[tp] = await self._retrying(tp, "the producer", self._started)
            raise

    async def _first_offset(self, tp: TopicPartition) -> int:
        """Where a partition the group never committed starts, as `start=` says."""
        if self.start == "earliest":
            offsets = await self._consumer.beginning_offsets([tp])
        else:
            offsets = await self._consumer.end_offsets([tp])
        first: int = offsets[tp]
        return first

    async def _retrying(
        self, tp: TopicPartition, what: str, get: Callable[[TopicPartition], Awaitable[T]]
    ) -> T:
        attempt = 0
        while True:
            try:
                return await get(tp)
            except (KafkaError, OSError, TimeoutError) as exc:
                attempt += 1
                log.info("mqkit: getting %s of %s failed (%r); again", what, tp, exc)
                await asyncio.sleep(min(5.0, 0.2 * attempt))

    def _done(self, tp: TopicPartition, offsets: list[int]) -> None:
        outputs = self._outputs.get(tp, {})
        for offset in offsets:
            if outputs.pop(offset, None) is not None:
                self.staged -= 1


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("mqkit: %s failed: the partition stays paused", task.get_name(), exc_info=exc)
