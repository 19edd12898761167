"""Kafka transactions: `broker.transaction()` for publishing, and the transactional producer
that it and exactly-once subscriptions (exactly_once.py) share.

- A publish in a transaction is staged here as a record. At commit one Kafka transaction
  carries them all: begin, produce (in record batches, batches.py), commit. So the
  transaction is open on the broker only while it commits: a producer killed inside the
  block leaves nothing open that would hold back read_committed readers until
  `?transaction_timeout=`.
- One commit at a time per broker object, on its transactional producer (a producer has one
  transaction at a time); blocks in concurrent tasks commit in turn.
- `?transactional_id=` names the producer. Give one that is stable across restarts of the
  same process and unique among processes: a restarted producer then fences its predecessor
  at once. Without it each broker object makes one of its own.
- A failure before the commit request (the broker away, a leader moving) drops the
  producer, whose successor aborts what it left, and tries again until `publish_timeout`:
  the staged records are still here, so nothing is lost and nothing is doubled. A failure
  once the commit request is out is not tried again, since it may have committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced

from mqkit.deadline import within_deadline
from mqkit.errors import TransactionError
from mqkit.message import Message
from mqkit.shutdown import finish_within
from mqkit.transactions import Transaction
from mqkit_kafka.batches import Record, produce
from mqkit_kafka.records import to_records


class Staged(Transaction):
    """Messages as records, held until a commit sends them in one Kafka transaction."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send(self, messages: Sequence[Message], delay: float | None) -> None:
        self.records += to_records(messages, delay)


class ProducerSource(Protocol):
    """What a transactional producer's user needs of the broker (said here, so neither this
    nor exactly_once.py imports broker.py)."""

    publish_timeout: float

    def transactional_producer(self, transactional_id: str) -> AIOKafkaProducer: ...

    async def ensure_topic(self, topic: str) -> None: ...


class TransactionLink(ProducerSource, Protocol):
    """What `broker.transaction()` needs of the broker: also its URL, for its errors."""

    @property
    def safe_url(self) -> str: ...


async def start_transactional(producer: AIOKafkaProducer) -> None:
    """Start `producer` and wait until Kafka has given it its epoch: from then on every
    earlier producer with its transactional id is fenced, and whatever that one left open
    has ended (aborted, or committed if its commit was under way)."""
    await producer.start()
    await producer.begin_transaction()  # waits for the producer id and epoch
    await producer.commit_transaction()  # empty: nothing goes to Kafka


async def stop_quietly(producer: AIOKafkaProducer) -> None:
    await finish_within(producer.stop(), 1.0, "stopping a transactional Kafka producer")


class _BeforeCommit(KafkaError):  # type: ignore[misc]
    """A failure before the commit request: the transaction was not committed."""


class PublishTransactions:
    """The commits of `broker.transaction()` blocks on one broker object."""

    def __init__(self, link: TransactionLink, transactional_id: str) -> None:
        self._link = link
        self._id = transactional_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    def begin(self) -> PublishTransaction:
        return PublishTransaction(self)

    async def commit(self, records: list[Record]) -> None:
        if not records:
            return  # an empty transaction: nothing to make visible
        async with self._lock:
            await within_deadline(
                lambda: self._commit_once(records),
                timeout=self._link.publish_timeout,
                what=f"a transaction to Kafka at {self._link.safe_url}",
                retry=(_BeforeCommit,),
            )

    async def _commit_once(self, records: list[Record]) -> None:
        try:
            for topic in {t for t, _ in records}:
                await self._link.ensure_topic(topic)
            producer = await self._started()
            await producer.begin_transaction()
            await produce(producer, records)
        except ProducerFenced as exc:
            await self.close()
            raise self._fenced() from exc
        except (KafkaError, OSError) as exc:
            await self.close()  # its successor aborts what this one left open
            raise _BeforeCommit(repr(exc)) from exc
        except BaseException:  # cancelled at the deadline: in an unknown state
            await self.close()
            raise
        try:
            await producer.commit_transaction()
        except ProducerFenced as exc:
            await self.close()
            raise self._fenced() from exc
        except BaseException as exc:
            await self.close()
            if isinstance(exc, KafkaError):
                raise TransactionError(
                    f"committing a transaction to Kafka at {self._link.safe_url} failed "
                    f"({exc!r}); it may have committed"
                ) from exc
            raise

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._link.transactional_producer(self._id)
            try:
                await start_transactional(producer)
            except BaseException:
                await stop_quietly(producer)
                raise
            self._producer = producer
        return self._producer

    def _fenced(self) -> TransactionError:
        return TransactionError(
            f"another producer took over transactional id {self._id!r} at "
            f"{self._link.safe_url}: this transaction was aborted"
        )

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_quietly(producer)


class PublishTransaction(Staged):
    """One `broker.transaction()` block: staged, then committed in one go."""

    def __init__(self, owner: PublishTransactions) -> None:
        super().__init__()
        self._owner = owner

    async def commit(self) -> None:
        await self._owner.commit(self.records)

    async def abort(self) -> None:
        self.records.clear()  # nothing was sent
