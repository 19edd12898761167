"""A Kafka consumer in a group, feeding deliveries that may finish in any order.

- Order per key: a record is handed out only when no earlier record with the same key from
  its partition is unsettled or waiting, so concurrent handlers keep per-key order.
- Offsets: each partition commits up to the oldest unfinished record (offsets.py), in the
  background, on close, and for partitions being revoked in a rebalance, so a rebalance
  neither loses work nor surfaces CommitFailedError to the user.
- Nack: redelivered from memory after its delay while the key stays blocked (order holds)
  and the partition keeps flowing; the commit point waits at that record, so a crash
  redelivers it. A delay longer than `max_inline_delay` instead writes a copy to the group's
  retry topic and lets the original commit: the partition's progress does not wait hours,
  at the price of that key's order.
- Records carrying `mqkit-not-before` (delayed publishes, retry copies) are held in memory
  until due without holding up anything else.
- Exactly-once (`exactly_once=True`): each commit is a transaction per partition carrying
  the outputs of the deliveries it commits (exactly_once.py, delivery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from mqkit.broker import Broker, Delivery, Start, Subscription
from mqkit.message import Message
from mqkit.shutdown import finish_within
from mqkit_kafka.committed import heed_group_errors
from mqkit_kafka.delivery import KafkaDelivery
from mqkit_kafka.exactly_once import PartitionTransactions
from mqkit_kafka.fairness import MAX_HELD, RoundRobin, held_per_partition, takeable
from mqkit_kafka.offsets import PartitionOffsets
from mqkit_kafka.records import from_record, retry_record
from mqkit_kafka.transactions import ProducerSource

log = logging.getLogger("mqkit.kafka")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sub: KafkaSubscription) -> None:
        self.sub = sub

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.sub.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.sub.transactions is not None:  # fence the last owners before fetching
            await self.sub.transactions.assigned(assigned)
        self.sub.assigned.set()


class KafkaLink(ProducerSource, Protocol):
    """What a subscription needs of the Kafka broker beyond the Broker interface (which its
    deliveries dead-letter through): said here, so this module never imports the broker's."""

    max_inline_delay: float
    subscriptions: set[KafkaSubscription]

    def retry_topic(self, topic: str, group: str | None) -> str: ...

    async def ensure_topic(self, topic: str) -> None: ...

    def consumer_config(self) -> dict[str, Any]: ...

    async def send_retry(self, retry_topic: str, message: Message, delay: float) -> None: ...


class KafkaSubscription(Subscription):
    def __init__(
        self,
        broker: Broker,
        link: KafkaLink,
        topic: str,
        group: str | None,
        prefetch: int,
        *,
        exactly_once: bool = False,
    ) -> None:
        self.broker = broker
        self.exactly_once = exactly_once
        self.transactions: PartitionTransactions | None = None
        self.link = link
        self.topic = topic
        self.group = group
        self.prefetch = prefetch
        self.retry_topic = link.retry_topic(topic, group) if group else None
        self.assigned = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._ready: deque[KafkaDelivery] = deque()
        self._unsettled: set[KafkaDelivery] = set()
        self._key_queues: dict[tuple[TopicPartition, str], deque[KafkaDelivery]] = {}
        self._timers: list[tuple[float, int, KafkaDelivery]] = []
        self._tiebreak = itertools.count()
        self._offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._generation = 0
        self._nonempty = asyncio.Event()
        self._room = asyncio.Event()
        self._wake = asyncio.Event()
        self._to_commit = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # -- starting ----------------------------------------------------------------------------

    async def start(self, start: Start) -> KafkaSubscription:
        topics = [self.topic] + ([self.retry_topic] if self.retry_topic else [])
        for t in topics:
            await self.link.ensure_topic(t)
        consumer = AIOKafkaConsumer(
            **self.link.consumer_config(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=start,
            max_poll_records=self.prefetch,
            isolation_level="read_committed",
        )
        await consumer.start()
        heed_group_errors(consumer)
        self._consumer = consumer
        self._take = RoundRobin(consumer)
        if self.exactly_once:
            assert self.group is not None  # Broker.subscribe saw to it
            self.transactions = PartitionTransactions(self.link, consumer, self.group, start)
        consumer.subscribe(topics, listener=_Rebalance(self))
        # Wait to be part of the group and fix the start positions, so that a message
        # published right after subscribe() returns is seen.
        fetch = asyncio.create_task(self._fetch_loop(), name=f"mqkit-fetch-{self.topic}")
        try:
            async with asyncio.timeout(60):
                await self.assigned.wait()
                if self.transactions is not None:
                    await self.transactions.taken_over(within=15)
                for tp in consumer.assignment():
                    await consumer.position(tp)
        except BaseException:
            fetch.cancel()
            await consumer.stop()
            raise
        self._tasks = [
            fetch,
            asyncio.create_task(self._commit_loop(), name=f"mqkit-commit-{self.topic}"),
            asyncio.create_task(self._timer_loop(), name=f"mqkit-timers-{self.topic}"),
        ]
        return self

    # -- fetching ----------------------------------------------------------------------------

    def _staged(self) -> int:
        """Settled, with an output waiting for its transaction: still held in memory, but
        not in a handler, so not counted against `prefetch` (a transaction commits what
        handlers finished while the one before it was under way)."""
        return self.transactions.staged if self.transactions is not None else 0

    async def _fetch_loop(self) -> None:
        assert self._consumer is not None
        failures = 0
        while not self._closing:
            room = self.prefetch - len(self._ready) - len(self._unsettled)
            # Refill by half buffers, not per settled record: a worker yields to the loop
            # on every message, and fetching one record costs about what fetching 250 does.
            if room <= 0 or (self._ready and room < self.prefetch // 2):
                self._room.clear()
                await self._room.wait()
                continue
            held = held_per_partition(self._key_queues, (t[2].tp for t in self._timers))
            assigned = self._consumer.assignment()
            partitions = takeable(assigned, held)
            if (assigned and not partitions) or held.total() + self._staged() >= MAX_HELD:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                batches = await self._take.take(partitions, room)
            except KafkaError as exc:
                failures += 1
                log.warning("mqkit: fetching %s failed (%s); retrying", self.topic, exc)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            failures = 0
            for tp, records in batches.items():
                for record in records:
                    self._admit(tp, record)

    def _admit(self, tp: TopicPartition, record: Any) -> None:
        offsets = self._offsets.get(tp)
        if self.transactions is not None and not (
            self.transactions.admits(tp, record.offset)
            and (offsets is None or offsets.is_new(record.offset))
        ):
            return  # fetched before the fence, or again after the seek it made
        message, not_before = from_record(record, topic=self.topic, delivering=True)
        if offsets is None:
            offsets = self._offsets[tp] = PartitionOffsets()
        offsets.fetched(record.offset)
        delivery = KafkaDelivery(message, self, tp, record.offset, self._generation)
        delivery.due = (not_before or 0) / 1000
        if message.key is not None:
            queue = self._key_queues.get((tp, message.key))
            if queue is not None:  # an earlier record with this key is still unsettled
                queue.append(delivery)
                return
            self._key_queues[(tp, message.key)] = deque()
        self._schedule(delivery)

    def _schedule(self, delivery: KafkaDelivery) -> None:
        if delivery.due > time.time():
            heapq.heappush(self._timers, (delivery.due, next(self._tiebreak), delivery))
            self._wake.set()
        else:
            self._ready.append(delivery)
            self._nonempty.set()

    async def _timer_loop(self) -> None:
        while not self._closing:
            self._wake.clear()
            now = time.time()
            while self._timers and self._timers[0][0] <= now:
                _, _, delivery = heapq.heappop(self._timers)
                if delivery.generation == self._generation:
                    self._ready.append(delivery)
                    self._nonempty.set()
            wait = self._timers[0][0] - now if self._timers else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, wait))

    async def __anext__(self) -> Delivery:
        while not self._ready:
            if self._closing:
                raise StopAsyncIteration
            self._nonempty.clear()
            await self._nonempty.wait()
        delivery = self._ready.popleft()
        self._unsettled.add(delivery)
        if not self._ready:
            self._room.set()  # refill now, even if nothing is settled
        return delivery

    # -- settling ----------------------------------------------------------------------------

    def finished(self, delivery: KafkaDelivery) -> None:
        """Acked (or dead-lettered): its offset may be committed; its key moves on."""
        self._unsettled.discard(delivery)
        self._room.set()
        if delivery.generation != self._generation:
            return  # its partition was revoked meanwhile; the new owner handles it again
        offsets = self._offsets.get(delivery.tp)
        if offsets is not None:
            if self.transactions is not None:
                self.transactions.stage(delivery.tp, delivery.offset, delivery.output)
            offsets.finished(delivery.offset)
            self._to_commit.set()
        self._next_of_key(delivery)

    def _next_of_key(self, delivery: KafkaDelivery) -> None:
        key = delivery.message.key
        if key is None:
            return
        queue = self._key_queues.get((delivery.tp, key))
        if not queue:
            self._key_queues.pop((delivery.tp, key), None)
            return
        self._schedule(queue.popleft())

    async def retry(self, delivery: KafkaDelivery, delay: float) -> None:
        self._unsettled.discard(delivery)
        self._room.set()
        if delivery.generation != self._generation:
            return
        if delay > self.link.max_inline_delay and self.retry_topic is not None:
            if self.transactions is not None:  # the copy goes with the offset, exactly once
                copy = retry_record(delivery.failed_copy(), delay)
                delivery.replace_output([(self.retry_topic, copy)])
            else:
                await self.link.send_retry(self.retry_topic, delivery.failed_copy(), delay)
            self.finished(delivery)
            return
        again = KafkaDelivery(
            delivery.failed_copy().with_changes(attempt=delivery.message.attempt + 1),
            self,
            delivery.tp,
            delivery.offset,
            delivery.generation,
        )
        again.due = time.time() + delay
        self._schedule(again)

    # -- offsets and rebalances --------------------------------------------------------------

    async def _commit_loop(self) -> None:
        # Commit as soon as something finished, one commit at a time: acks that arrive during
        # a commit share the next one. A consumer killed mid-run then redelivers about what
        # it was holding, not everything since a periodic commit.
        while not self._closing:
            await self._to_commit.wait()
            self._to_commit.clear()
            if not await self.commit():
                await asyncio.sleep(0.5)  # mid-rebalance or broker away: no busy loop

    async def commit(self, only: set[TopicPartition] | None = None) -> bool:
        """Commit what finished; False when Kafka refused (it is tried again later)."""
        if self._consumer is None or self.group is None:
            return True
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, state in self._offsets.items():
            if only is not None and tp not in only:
                continue
            point = state.commit_point()
            if point is not None:
                offsets[tp] = OffsetAndMetadata(point, "")
        if not offsets:
            return True
        if self.transactions is not None:
            return await self._commit_transactions({tp: m.offset for tp, m in offsets.items()})
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance is under way; the records stay uncommitted and come back to
            # whoever owns the partition next. Never the user's problem.
            log.info("mqkit: commit on %s deferred (%s)", self.topic, type(exc).__name__)
            self._to_commit.set()
            return False
        for tp, meta in offsets.items():
            committed = self._offsets.get(tp)
            if committed is not None:  # not revoked while the commit was under way
                committed.committed = meta.offset
        return True

    async def _commit_transactions(self, points: dict[TopicPartition, int]) -> bool:
        assert self.transactions is not None and self._consumer is not None
        outcomes = await self.transactions.commit(points)
        self._room.set()  # what it carried is no longer held
        for tp, outcome in outcomes.items():
            state = self._offsets.get(tp)
            if outcome == "committed" and state is not None:
                state.committed = points[tp]
            elif outcome != "committed":  # its owner, whoever the group says, goes on with it
                self._forget({tp})
                self._consumer.pause(tp)
        return True

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        await self.commit(only=revoked)
        self._forget(revoked)
        if self.transactions is not None:
            await self.transactions.revoked(revoked)

    def _forget(self, revoked: set[TopicPartition]) -> None:
        # Everything of these partitions not finished goes to their next owner.
        self._generation += 1
        for tp in revoked:
            self._offsets.pop(tp, None)
        self._ready = deque(d for d in self._ready if d.tp not in revoked)
        for key in [k for k in self._key_queues if k[0] in revoked]:
            del self._key_queues[key]
        self._timers = [t for t in self._timers if t[2].tp not in revoked]
        heapq.heapify(self._timers)
        # Deliveries of kept partitions stay valid: bring them into the new generation.
        for d in [*self._ready, *self._unsettled, *(t[2] for t in self._timers)]:
            if d.tp not in revoked:
                d.generation = self._generation
        for queue in self._key_queues.values():
            for d in queue:
                d.generation = self._generation

    # -- closing -----------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._to_commit.set()
        self._nonempty.set()
        self._room.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            # A transaction takes a few round trips more than a commit.
            within = 1.5 if self.transactions is None else 5.0
            await finish_within(self.commit(), within, f"committing {self.topic}")
            if self.transactions is not None:
                await self.transactions.close()
            await finish_within(
                self._consumer.stop(), 2.0, f"stopping the consumer of {self.topic}"
            )
        self.link.subscriptions.discard(self)
