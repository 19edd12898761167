"""`kafka://host:9092[,host2:9092]`: Apache Kafka through aiokafka.

- Producer: idempotent, acks=all; the key picks the partition, so order per key holds.
- Topics are created on first use with `?partitions=6` partitions, replicated to
  `?replication=` brokers (default: 3, or every broker of a smaller cluster) with
  `min.insync.replicas` a majority of them (2 of 3), so that an acknowledged publish is on two
  brokers before it counts.
- Groups are Kafka consumer groups; see subscription.py for acks, order, nacks and
  rebalances. A new group starts at the oldest retained record (named groups) or the next
  one (private subscriptions), so `replay` is Kafka's retention.
- A publish while Kafka is down raises PublishTimeoutError after `?publish_timeout=10s`
  instead of waiting for metadata forever.
- Transactions: `broker.transaction()` (transactions.py), on a transactional producer with
  `?transactional_id=` and `?transaction_timeout=`; exactly-once subscriptions
  (exactly_once.py) on a transactional producer per input partition.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    TopicAlreadyExistsError,
    UnknownProducerId,
)

from mqkit import options
from mqkit.broker import Broker, Start, Subscription
from mqkit.capabilities import Capabilities
from mqkit.deadline import within_deadline
from mqkit.errors import BrokerUnavailableError, ConfigurationError
from mqkit.lag import Lag
from mqkit.message import Message
from mqkit.shutdown import abandon, finish_within
from mqkit.transactions import Transaction
from mqkit_kafka.batches import produce
from mqkit_kafka.lag import group_lag
from mqkit_kafka.records import retry_record, to_records
from mqkit_kafka.subscription import KafkaSubscription
from mqkit_kafka.transactions import PublishTransactions

log = logging.getLogger("mqkit.kafka")

_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")
OVERHEAD = 64 * 1024  # headers and record framing on top of the body limit


PARTITIONS = options.integer("partitions", "6", "partitions of the topics mqkit creates", minimum=1)
REPLICATION = options.integer(
    "replication",
    "0",
    "replication factor of the topics mqkit creates (0: 3, or all brokers when fewer)",
)
MIN_INSYNC = options.integer(
    "min_insync",
    "0",
    "min.insync.replicas of the topics mqkit creates (0: a majority of the replicas, at most"
    " replication - 1)",
)
# Production's usual replication: one broker can be lost, and one more restarted, with every
# acknowledged write still on a replica.
DEFAULT_REPLICATION = 3
MAX_INLINE_DELAY = options.duration(
    "max_inline_delay", "60s", "longer nack delays go through the group's retry topic"
)
TRANSACTIONAL_ID = options.text(
    "transactional_id",
    "",
    "the producer of broker.transaction(): stable across restarts, unique among processes"
    " (default: one made for each broker object)",
)
TRANSACTION_TIMEOUT = options.duration(
    "transaction_timeout",
    "60s",
    "how long Kafka lets a transaction stay open before aborting it (a killed producer's)",
    positive=True,
)


def majority(replicas: int) -> int:
    """min.insync.replicas for a replication factor: a majority (2 of 3, 3 of 5), yet one
    fewer than all (1 of 2), so that losing one broker never stops the writes."""
    return max(1, min(replicas // 2 + 1, replicas - 1))


class KafkaBroker(Broker):
    SYSTEM = "kafka"
    capabilities = Capabilities(
        durable=True,
        consumer_groups=True,
        redelivery=True,
        ordered_by_key=True,
        delayed_delivery=True,
        replay=True,
        native_transactions=True,
        selective_ack=False,  # one committed offset per partition
        lag=True,  # in flight is not told apart, and ages are not read: see lag.py
    )

    OPTIONS = (
        *Broker.OPTIONS,
        PARTITIONS,
        REPLICATION,
        MIN_INSYNC,
        MAX_INLINE_DELAY,
        TRANSACTIONAL_ID,
        TRANSACTION_TIMEOUT,
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigurationError(f"kafka URL names no broker: {self.safe_url}")
        self.bootstrap = parts.netloc.rsplit("@", 1)[-1]
        self.partitions = self.option(PARTITIONS)
        self.replication = self.option(REPLICATION)  # 0 until the cluster is known
        self.min_insync = self.option(MIN_INSYNC)
        self.max_inline_delay = self.option(MAX_INLINE_DELAY)
        self.subscriptions: set[KafkaSubscription] = set()
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None  # reads end offsets for lag()
        self._offsets_lock = asyncio.Lock()
        self._topics: set[str] = set()
        self._renewal: asyncio.Task[None] | None = None
        self.transaction_timeout = self.option(TRANSACTION_TIMEOUT)
        self._transactions = PublishTransactions(
            self, self.option(TRANSACTIONAL_ID) or f"mqkit-{uuid.uuid4()}"
        )

    def consumer_config(self) -> dict[str, Any]:
        fetch = max(1024 * 1024, self.max_message_bytes + OVERHEAD)
        return {
            "bootstrap_servers": self.bootstrap,
            "max_partition_fetch_bytes": fetch,
            "fetch_max_bytes": max(52428800, fetch),
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 1_000,
            "retry_backoff_ms": 100,
        }

    def retry_topic(self, topic: str, group: str | None) -> str:
        return f"{topic}.retry.{_TOPIC_CHARS.sub('_', group or '')}"[:249]

    # -- lifecycle ---------------------------------------------------------------------------

    def _new_producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        settings: dict[str, Any] = {"retry_backoff_ms": 100}
        if transactional_id is not None:
            settings = {
                "transactional_id": transactional_id,
                "transaction_timeout_ms": int(self.transaction_timeout * 1000),
                # A transaction begun just after a commit finds Kafka still writing that
                # one's markers (CONCURRENT_TRANSACTIONS, KAFKA-5477) and is retried after
                # this; aiokafka shortens it for records, not for the offsets, which an
                # exactly-once commit sends first. At 100 ms, copies waited 41 ms (p50).
                "retry_backoff_ms": 20,
            }
        return AIOKafkaProducer(
            **settings,
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            # No linger: an awaited publish waited it out every time (with 2 ms, single
            # publishes ran at a fifth of the rate), and records that come while a
            # request is in flight are batched anyway.
            linger_ms=0,
            max_request_size=self.max_message_bytes + OVERHEAD,
            request_timeout_ms=int(self.publish_timeout * 1000),
        )

    def transactional_producer(self, transactional_id: str) -> AIOKafkaProducer:
        """A producer for transactions (not started): see transactions.py."""
        return self._new_producer(transactional_id)

    async def _start(self) -> None:
        self._producer = self._new_producer()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            async with asyncio.timeout(15):
                await self._producer.start()
                await self._admin.start()
                brokers = len((await self._admin.describe_cluster())["brokers"])
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._stop_clients()
            raise BrokerUnavailableError(f"cannot reach Kafka at {self.safe_url}: {exc}") from exc
        self.replication = self.replication or min(DEFAULT_REPLICATION, brokers)
        self.min_insync = self.min_insync or majority(self.replication)

    async def _renew_producer(self, broken: AIOKafkaProducer) -> None:
        """Replace a producer whose idempotence state the broker no longer accepts (after a
        broker restart: OutOfOrderSequenceNumber, UnknownProducerId). A new producer id
        starts clean; a batch sent again may duplicate, never vanish.

        The renewal is the broker's own task, shielded from the publish that asked for it: a
        publish past its deadline is cancelled, and a renewal cancelled half-way once left a
        stopped producer in place, failing every later publish (a CI run looped on it).
        """
        if self._producer is not broken:
            return  # renewed already
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.create_task(self._renew(broken))
        await asyncio.shield(self._renewal)

    async def _renew(self, broken: AIOKafkaProducer) -> None:
        # The new producer starts before the broken one stops: stopping flushes, which a
        # producer the broker refuses may never finish, and until the swap the broken one is
        # still the one publishes use (and fail on, and come back here for).
        while True:
            producer = self._new_producer()
            try:
                async with asyncio.timeout(self.publish_timeout + 5):
                    await producer.start()
                break
            except (KafkaError, OSError, TimeoutError) as exc:
                log.info("mqkit: restarting the Kafka producer at %s: %r", self.safe_url, exc)
            except asyncio.CancelledError:  # the broker is closing
                abandon(asyncio.ensure_future(producer.stop()))
                raise
            await finish_within(producer.stop(), 1.0, "stopping a Kafka producer that failed")
            await asyncio.sleep(0.2)
        self._producer = producer
        await finish_within(broken.stop(), 1.0, "stopping the replaced Kafka producer")

    async def _check(self) -> None:
        assert self._producer is not None
        await self._producer.client.fetch_all_metadata()  # KafkaError once no broker answers

    async def _close(self) -> None:
        if self._renewal is not None:
            abandon(self._renewal)
        await asyncio.gather(*(s.close() for s in list(self.subscriptions)))
        await self._transactions.close()
        await self._stop_clients()

    async def _stop_clients(self) -> None:
        if self._producer is not None:
            await finish_within(self._producer.stop(), 1.0, "stopping the Kafka producer")
        if self._admin is not None:
            await finish_within(self._admin.close(), 0.5, "closing the Kafka admin client")
        if self._offsets is not None:
            await finish_within(self._offsets.stop(), 0.5, "stopping the Kafka offsets reader")

    async def _lag(self, topic: str, group: str) -> Lag:
        assert self._admin is not None
        async with self._offsets_lock:
            if self._offsets is None:
                offsets = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap, enable_auto_commit=False
                )
                await offsets.start()
                self._offsets = offsets
        return await group_lag(
            self._admin, self._offsets, topic, self.retry_topic(topic, group), group
        )

    # -- topics ------------------------------------------------------------------------------

    async def ensure_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        assert self._admin is not None
        new = NewTopic(
            topic,
            self.partitions,
            self.replication,
            topic_configs={
                "max.message.bytes": str(self.max_message_bytes + OVERHEAD),
                "min.insync.replicas": str(self.min_insync),
            },
        )
        try:
            response = await self._admin.create_topics([new], timeout_ms=15_000)
            errors = [e for e in getattr(response, "topic_errors", []) if e[1] not in (0, 36)]
            if errors:
                log.warning("mqkit: creating topic %s: %s", topic, errors)
        except TopicAlreadyExistsError:
            pass
        self._topics.add(topic)

    # -- publishing --------------------------------------------------------------------------

    async def _send(self, messages: Sequence[Message], delay: float | None) -> None:
        await self._deliver(to_records(messages, delay), "publish")

    async def _deliver(self, records: list[tuple[str, dict[str, Any]]], what: str) -> None:
        """Produce records and wait for acks=all, retrying through broker restarts until
        `publish_timeout`; then a typed error. Detached: a producer being stopped or started
        against a dead broker ignored cancellation for seconds in a CI run, and the timeout
        is the timeout."""
        await within_deadline(
            lambda: self._deliver_once(records, what),
            timeout=self.publish_timeout,
            what=f"{what} to Kafka at {self.safe_url}",
            retry=(KafkaError,),
            detached=True,
        )

    async def _deliver_once(self, records: list[tuple[str, dict[str, Any]]], what: str) -> None:
        """One attempt; a KafkaError it lets out is worth another (after a producer renewal
        where the broker lost the producer's idempotence state)."""
        for topic in {t for t, _ in records}:
            await self.ensure_topic(topic)
        producer = self._producer
        assert producer is not None
        try:
            await produce(producer, records)
        except (OutOfOrderSequenceNumber, UnknownProducerId):
            await self._renew_producer(producer)
            raise
        except ProducerClosed as exc:
            if self._producer is producer:  # closed by close(), not replaced
                raise BrokerUnavailableError(
                    f"{what} to Kafka at {self.safe_url}: the broker is closed"
                ) from exc
            raise  # replaced while this attempt was on it: the next one takes the new one
        except KafkaError as exc:
            if not exc.retriable and not isinstance(exc, KafkaConnectionError):
                raise BrokerUnavailableError(
                    f"{what} to Kafka at {self.safe_url} failed: {exc!r}"
                ) from exc
            raise

    async def send_retry(self, retry_topic: str, message: Message, delay: float) -> None:
        """A copy for the group's retry topic, held by consumers until it is due."""
        await self._deliver([(retry_topic, retry_record(message, delay))], "retry")

    # -- subscribing -------------------------------------------------------------------------

    async def _subscribe(
        self, topic: str, group: str | None, start: Start, prefetch: int
    ) -> Subscription:
        subscription = await KafkaSubscription(self, self, topic, group, prefetch).start(start)
        self.subscriptions.add(subscription)
        return subscription

    async def _subscribe_exactly_once(
        self, topic: str, group: str, start: Start, prefetch: int
    ) -> Subscription:
        subscription = KafkaSubscription(self, self, topic, group, prefetch, exactly_once=True)
        await subscription.start(start)
        self.subscriptions.add(subscription)
        return subscription

    # -- transactions ------------------------------------------------------------------------

    async def _begin_transaction(self) -> Transaction:
        return self._transactions.begin()
