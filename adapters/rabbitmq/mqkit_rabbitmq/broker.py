"""`amqp://user:pass@host:5672/vhost`: RabbitMQ through aio-pika.

- A topic is a durable topic exchange; a group is a durable queue bound to it with `#`
  (fan-out across groups, competing consumers within one); a subscription without a group
  gets an exclusive, auto-deleted queue of its own. `?queue_type=quorum` declares quorum
  queues (replicated; they also count deliveries).
- Publishes are persistent and wait for the publisher confirm.
- Consumers ack manually with a bounded prefetch (`basic.qos`).
- Nack publishes a copy carrying the attempt count to the group's queue (or, with a delay, to
  a delay queue) and then acks the original, so attempts are counted exactly on every queue
  type. Delays use per-duration queues whose TTL dead-letters into the target: one queue per
  delay bucket (two significant digits, so within 5%), since RabbitMQ expires per-message TTLs
  only at the head of a queue; idle delay queues delete themselves.
- Reconnect: a robust connection re-declares exchanges, queues, bindings and consumers after
  a broker restart; a publish while the broker is down raises PublishTimeoutError after
  `?publish_timeout=10s`.
- What RabbitMQ does not keep cannot be replayed: a queue holds what was published after it
  was declared, so there is no `replay`, and no per-key order across competing consumers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
    ExchangeType,
)
from aio_pika.exceptions import AMQPError

from mqkit import codec, options
from mqkit.broker import Broker, Delivery, Start, Subscription
from mqkit.capabilities import Capabilities
from mqkit.deadline import within_deadline
from mqkit.errors import BrokerUnavailableError
from mqkit.message import Message
from mqkit.shutdown import finish_within
from mqkit.wire import ATTEMPT, DLQ_GROUP, KEY

log = logging.getLogger("mqkit.rabbitmq")

QUEUE_TYPE = options.choice(
    "queue_type", "classic", ("classic", "quorum"), "the type of the queues groups declare"
)
CONNECT_TIMEOUT = options.duration("connect_timeout", "10s", "how long connecting may take")
MQKIT_OPTIONS = {o.name for o in (*options.COMMON, QUEUE_TYPE, CONNECT_TIMEOUT)}
# What aio-pika and aiormq read from the URL themselves.
AMQP_CLIENT_OPTIONS = frozenset(
    {"auth", "cafile", "capath", "cadata", "certfile", "keyfile", "no_verify_ssl", "heartbeat",
     "name", "timeout", "interleave", "happy_eyeballs_delay", "reconnect_interval", "fail_fast"}
)  # fmt: skip
DELAY_PREFIX = "mqkit.delay"
DEAD_LETTER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


def amqp_url(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in MQKIT_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(query)))


def delay_bucket_ms(delay: float) -> int:
    """The delay in ms rounded to two significant digits: few queues, within 5% of asked."""
    ms = max(1, math.ceil(delay * 1000))  # never early
    if ms < 100:
        return ms
    scale = 10 ** (int(math.log10(ms)) - 1)
    return int(round(ms / scale) * scale)


def group_queue(topic: str, group: str) -> str:
    return f"{topic}:{group}"


def to_amqp(message: Message, *, attempt: int = 0) -> aio_pika.Message:
    headers: dict[str, Any] = dict(message.headers)
    if message.key is not None:
        headers[KEY] = message.key
    if attempt:
        headers[ATTEMPT] = attempt
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        message_id=message.id,
        timestamp=datetime.fromtimestamp(message.timestamp, UTC),
        delivery_mode=DeliveryMode.PERSISTENT,
    )


def from_amqp(topic: str, incoming: AbstractIncomingMessage) -> Message:
    """The message, its attempt counted from mqkit's header and the broker's redelivery."""
    raw = dict(incoming.headers or {})
    base = int(str(raw.pop(ATTEMPT, 0) or 0))
    key = raw.pop(KEY, None)
    delivery_count = raw.pop("x-delivery-count", None)  # quorum queues count for us
    for name in [n for n in raw if n.startswith(DEAD_LETTER_HEADERS)]:
        del raw[name]  # set by RabbitMQ when a delay queue dead-letters the message
    headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in raw.items()}
    if delivery_count is not None:
        seen = int(str(delivery_count)) + 1
    else:
        seen = 2 if incoming.redelivered else 1
    timestamp = (
        incoming.timestamp.timestamp() if incoming.timestamp else datetime.now(UTC).timestamp()
    )
    return Message(
        topic=topic,
        body=incoming.body,
        id=incoming.message_id or f"amqp-{incoming.delivery_tag}-{timestamp}",
        key=key.decode() if isinstance(key, bytes) else (str(key) if key is not None else None),
        headers=headers,
        content_type=incoming.content_type or codec.OCTET_STREAM,
        timestamp=timestamp,
        attempt=base + seen,
    )


class RabbitDelivery(Delivery):
    def __init__(
        self, message: Message, sub: RabbitSubscription, incoming: AbstractIncomingMessage
    ) -> None:
        super().__init__(message, sub.group, sub.broker)
        self._sub = sub
        self._incoming = incoming

    async def _ack(self) -> None:
        try:
            await self._incoming.ack()
        except (AMQPError, ConnectionError, RuntimeError):
            # The channel died with the connection: the broker requeued the message already.
            log.info(
                "mqkit: ack of %s lost with its channel; it will be redelivered", self.message.id
            )
        finally:
            self._sub.settled(self)

    async def _nack(self, delay: float) -> None:
        try:
            target = self._sub.queue_name
            await self._sub.broker.publish_copy(
                self.failed_copy(), target, delay, attempt=self.message.attempt
            )
            await self._incoming.ack()
        except (AMQPError, ConnectionError, RuntimeError):
            log.info("mqkit: nack of %s interrupted; the broker will redeliver it", self.message.id)
        finally:
            self._sub.settled(self)


class RabbitSubscription(Subscription):
    def __init__(self, broker: RabbitBroker, topic: str, group: str | None, prefetch: int) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.prefetch = prefetch
        self.queue_name = ""
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._buffer: asyncio.Queue[RabbitDelivery | None] = asyncio.Queue()
        self._unsettled: set[RabbitDelivery] = set()
        self._closing = False

    async def start(self, start: Start) -> RabbitSubscription:
        channel = await self.broker.connection.channel()
        await channel.set_qos(prefetch_count=min(self.prefetch, 65_535))  # AMQP's limit
        exchange = await self.broker.exchange(self.topic, channel)
        if self.group is None:
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await self._consume(channel, queue, exchange)
            return self
        name = group_queue(self.topic, self.group)
        async with self.broker.queue_locks[name]:
            queue = await channel.declare_queue(
                name, durable=True, arguments=self.broker.queue_args
            )
            await self._consume(channel, queue, exchange)
        return self

    async def _consume(
        self, channel: AbstractChannel, queue: AbstractQueue, exchange: AbstractExchange
    ) -> None:
        await queue.bind(exchange, "#")
        self._channel, self._queue, self.queue_name = channel, queue, queue.name
        self._tag = await queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._closing:
            with contextlib.suppress(AMQPError, ConnectionError, RuntimeError):
                await incoming.nack(requeue=True)
            return
        message = from_amqp(self.topic, incoming)
        await self._buffer.put(RabbitDelivery(message, self, incoming))

    def settled(self, delivery: RabbitDelivery) -> None:
        self._unsettled.discard(delivery)

    async def __anext__(self) -> Delivery:
        if self._closing and self._buffer.empty():
            raise StopAsyncIteration
        delivery = await self._buffer.get()
        if delivery is None:
            raise StopAsyncIteration
        self._unsettled.add(delivery)
        return delivery

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        pending: list[RabbitDelivery] = []
        while not self._buffer.empty():
            item = self._buffer.get_nowait()
            if item is not None:
                pending.append(item)
        pending += list(self._unsettled)
        with contextlib.suppress(AMQPError, ConnectionError, RuntimeError, TimeoutError):
            if self._queue is not None and self._tag is not None:
                await asyncio.wait_for(self._queue.cancel(self._tag), 3)
            for delivery in pending:  # hand back what was fetched but not finished
                if delivery._mark_settled():
                    await delivery._incoming.nack(requeue=True)
            if self._channel is not None:
                await asyncio.wait_for(self._channel.close(), 3)
        self._buffer.put_nowait(None)
        self.broker.subscriptions.discard(self)


class RabbitBroker(Broker):
    capabilities = Capabilities(
        durable=True,
        consumer_groups=True,
        redelivery=True,
        ordered_by_key=False,
        delayed_delivery=True,
        replay=False,
        selective_ack=True,
    )

    OPTIONS = (*Broker.OPTIONS, QUEUE_TYPE, CONNECT_TIMEOUT)
    CLIENT_OPTIONS = AMQP_CLIENT_OPTIONS

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.queue_args: dict[str, Any] = {"x-queue-type": self.option(QUEUE_TYPE)}
        self.connect_timeout = self.option(CONNECT_TIMEOUT)
        self.subscriptions: set[RabbitSubscription] = set()
        # RabbitMQ 3.10 crashes the whole connection (INTERNAL_ERROR, `badmatch noproc` in
        # rabbit_quorum_queue:consume) when a consume reaches a quorum queue whose Raft
        # member has not started yet, which is what a second subscriber racing the first
        # one's declare does: subscribers of one queue declare and consume one at a time.
        self.queue_locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._delay_queues: set[str] = set()
        self._dead_letter_queues: set[str] = set()

    @property
    def connection(self) -> AbstractRobustConnection:
        assert self._connection is not None, "start() the broker first"
        return self._connection

    async def _start(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(
                amqp_url(self.url),
                timeout=self.connect_timeout,
                reconnect_interval=0.5,
                client_properties={"connection_name": "mqkit"},
            )
            self._channel = await self._connection.channel(publisher_confirms=True)
        except (AMQPError, OSError, TimeoutError, ConnectionError) as exc:
            raise BrokerUnavailableError(
                f"cannot reach RabbitMQ at {self.safe_url}: {exc}"
            ) from exc

    async def _close(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self.subscriptions)))
        if self._connection is not None:
            await finish_within(self._connection.close(), 2.0, "closing the RabbitMQ connection")

    async def exchange(
        self, topic: str, channel: AbstractChannel | None = None
    ) -> AbstractExchange:
        if channel is not None:
            return await channel.declare_exchange(topic, ExchangeType.TOPIC, durable=True)
        exchange = self._exchanges.get(topic)
        if exchange is None:
            assert self._channel is not None
            exchange = await self._channel.declare_exchange(topic, ExchangeType.TOPIC, durable=True)
            self._exchanges[topic] = exchange
        return exchange

    async def _confirmed(self, what: str, attempt: Callable[[], Awaitable[object]]) -> None:
        """`attempt` until the broker confirms it, through a reconnection of the robust
        connection, within `publish_timeout`."""
        await within_deadline(
            attempt,
            timeout=self.publish_timeout,
            what=f"{what} to RabbitMQ at {self.safe_url}",
            retry=(AMQPError, ConnectionError, RuntimeError),
        )

    async def _send(self, messages: Sequence[Message], delay: float | None) -> None:
        async def send() -> None:
            publishes = []
            for message in messages:
                routing_key = message.key or ""
                if delay:
                    queue = await self._delay_queue(delay, dead_letter_exchange=message.topic)
                    assert self._channel is not None
                    await self.exchange(message.topic)
                    # Dead-lettered into the topic exchange when due; groups bind with `#`,
                    # so the routing key it then carries (the delay queue's) reaches them all.
                    publishes.append(
                        self._channel.default_exchange.publish(
                            to_amqp(message), queue, mandatory=False
                        )
                    )
                else:
                    exchange = await self.exchange(message.topic)
                    publishes.append(
                        exchange.publish(to_amqp(message), routing_key, mandatory=False)
                    )
            await asyncio.gather(*publishes)

        await self._confirmed("publish", send)

    async def _delay_queue(
        self, delay: float, *, dead_letter_exchange: str, routing_key: str | None = None
    ) -> str:
        ms = delay_bucket_ms(delay)
        target = routing_key or ""
        name = f"{DELAY_PREFIX}.{dead_letter_exchange or 'direct'}.{target or 'all'}.{ms}ms"
        if name not in self._delay_queues:
            assert self._channel is not None
            arguments: dict[str, Any] = {
                "x-message-ttl": ms,
                "x-dead-letter-exchange": dead_letter_exchange,
                "x-expires": ms + 600_000,  # gone when unused for 10 minutes
            }
            if routing_key is not None:
                arguments["x-dead-letter-routing-key"] = routing_key
            await self._channel.declare_queue(name, durable=True, arguments=arguments)
            self._delay_queues.add(name)
        return name

    async def publish_copy(
        self, message: Message, queue: str, delay: float, *, attempt: int
    ) -> None:
        """Put a copy of a delivered message straight into `queue`, now or after `delay`."""
        assert self._channel is not None
        body = to_amqp(message, attempt=attempt)
        if delay > 0:
            target = await self._delay_queue(delay, dead_letter_exchange="", routing_key=queue)
        else:
            target = queue
        channel = self._channel
        await self._confirmed(
            "nack", lambda: channel.default_exchange.publish(body, target, mandatory=False)
        )

    async def dead_letter(self, messages: Sequence[Message]) -> None:
        # An exchange keeps nothing by itself: bind the DLQ group's queue before the first
        # dead letter, or mqkit's DLQ tools would find an empty queue.
        for topic in {m.topic for m in messages} - self._dead_letter_queues:
            assert self._channel is not None
            exchange = await self.exchange(topic)
            name = group_queue(topic, DLQ_GROUP)
            async with self.queue_locks[name]:
                queue = await self._channel.declare_queue(
                    name, durable=True, arguments=self.queue_args
                )
                await queue.bind(exchange, "#")
            self._dead_letter_queues.add(topic)
        await self.send(messages)

    async def _subscribe(
        self, topic: str, group: str | None, start: Start, prefetch: int
    ) -> Subscription:
        subscription = await RabbitSubscription(self, topic, group, prefetch).start(start)
        self.subscriptions.add(subscription)
        return subscription
