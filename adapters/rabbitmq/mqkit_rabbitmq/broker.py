"""`amqp://user:pass@host:5672/vhost`: RabbitMQ through aio-pika.

- A topic is a durable topic exchange; a group is a durable queue bound to it with `#`
  (fan-out across groups, competing consumers within one); a subscription without a group
  gets an exclusive, auto-deleted queue of its own. Groups' queues are quorum queues
  (replicated; they also count deliveries) when the URL names several hosts (a cluster, see
  failover.py), classic ones on a single node; `?queue_type=classic|quorum` chooses. Delay
  queues follow, quorum ones dead-lettering at least once.
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
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
    ExchangeType,
)
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity

from mqkit import options
from mqkit.broker import Broker, Start, Subscription
from mqkit.capabilities import Capabilities
from mqkit.deadline import within_deadline
from mqkit.errors import BrokerUnavailableError, PublishTimeoutError
from mqkit.lag import Lag
from mqkit.message import Message
from mqkit.shutdown import finish_within
from mqkit.wire import DLQ_GROUP
from mqkit_rabbitmq.failover import FailoverConnection, hosts
from mqkit_rabbitmq.subscription import RabbitSubscription
from mqkit_rabbitmq.wire import amqp_url, group_queue, to_amqp

log = logging.getLogger("mqkit.rabbitmq")

QUEUE_TYPE = options.choice(
    "queue_type",
    "auto",
    ("auto", "classic", "quorum"),
    "the type of the queues groups declare (auto: quorum when the URL names several hosts)",
)
HOST_ORDER = options.choice(
    "host_order",
    "random",
    ("random", "listed"),
    "which of several hosts is tried first (random spreads connections and queue leaders)",
)
CONNECT_TIMEOUT = options.duration("connect_timeout", "10s", "how long connecting may take")
MQKIT_OPTIONS = {o.name for o in (*options.COMMON, QUEUE_TYPE, HOST_ORDER, CONNECT_TIMEOUT)}
# What aio-pika and aiormq read from the URL themselves.
AMQP_CLIENT_OPTIONS = frozenset(
    {"auth", "cafile", "capath", "cadata", "certfile", "keyfile", "no_verify_ssl", "heartbeat",
     "name", "timeout", "interleave", "happy_eyeballs_delay", "reconnect_interval", "fail_fast"}
)  # fmt: skip
DELAY_PREFIX = "mqkit.delay"


def delay_bucket_ms(delay: float) -> int:
    """The delay in ms rounded to two significant digits: few queues, within 5% of asked."""
    ms = max(1, math.ceil(delay * 1000))  # never early
    if ms < 100:
        return ms
    scale = 10 ** (int(math.log10(ms)) - 1)
    return int(round(ms / scale) * scale)


class RabbitBroker(Broker):
    SYSTEM = "rabbitmq"
    capabilities = Capabilities(
        durable=True,
        consumer_groups=True,
        redelivery=True,
        ordered_by_key=False,
        delayed_delivery=True,
        replay=False,
        selective_ack=True,
        lag=True,  # ready messages only: AMQP tells no more (see _lag)
    )

    OPTIONS = (*Broker.OPTIONS, QUEUE_TYPE, HOST_ORDER, CONNECT_TIMEOUT)
    CLIENT_OPTIONS = AMQP_CLIENT_OPTIONS

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.hosts = hosts(amqp_url(url, MQKIT_OPTIONS))
        queue_type = self.option(QUEUE_TYPE)
        if queue_type == "auto":
            queue_type = "quorum" if len(self.hosts) > 1 else "classic"
        self.queue_args: dict[str, Any] = {"x-queue-type": queue_type}
        self.connect_timeout = self.option(CONNECT_TIMEOUT)
        self.shuffle_hosts = self.option(HOST_ORDER) == "random"
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
            self._connection = FailoverConnection(
                self.hosts,
                shuffle=self.shuffle_hosts,
                reconnect_interval=0.5,
                client_properties={"connection_name": "mqkit"},
            )
            await self._connection.connect(timeout=self.connect_timeout)
            self._channel = await self._connection.channel(publisher_confirms=True)
        except (AMQPError, OSError, TimeoutError, ConnectionError) as exc:
            raise BrokerUnavailableError(
                f"cannot reach RabbitMQ at {self.safe_url}: {exc}"
            ) from exc

    async def _check(self) -> None:
        if not self.connection.connected.is_set():
            raise BrokerUnavailableError(f"RabbitMQ at {self.safe_url}: reconnecting")
        assert self._channel is not None
        # A round trip: a connection that looks open may lead nowhere (a partition).
        await self._channel.declare_exchange("amq.topic", ExchangeType.TOPIC, passive=True)

    async def _lag(self, topic: str, group: str) -> Lag:
        """The group queue's ready messages (queue.declare-ok's message count). Unacked ones
        and those waiting in delay queues are told by the management API only. A queue that
        does not exist holds nothing (RabbitMQ keeps nothing for a group before it)."""
        # On a channel of its own: a missing queue closes the channel that asked.
        async with self.connection.channel() as channel:
            try:
                queue = await channel.declare_queue(group_queue(topic, group), passive=True)
            except ChannelNotFoundEntity:
                return Lag(topic, group, waiting=0)
        ready = queue.declaration_result.message_count or 0
        return Lag(topic, group, waiting=ready)

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
        connection, within `publish_timeout`.

        A publish that times out leaves a new channel for the next one. After a quorum
        queue's leader died, RabbitMQ 3.10 never confirmed anything more on a channel that
        had publishes in flight to it, though the queue had a new leader and a fresh channel
        on the same connection was confirmed at once (the cluster chaos case stalled on it)."""
        try:
            await within_deadline(
                attempt,
                timeout=self.publish_timeout,
                what=f"{what} to RabbitMQ at {self.safe_url}",
                retry=(AMQPError, ConnectionError, RuntimeError),
            )
        except PublishTimeoutError:
            await self._new_channel()
            raise

    async def _new_channel(self) -> None:
        """Swap in a new publishing channel once it is open (publishes meanwhile keep using
        the old one); when the connection is away, keep the old one, which the robust
        connection restores."""
        stale = self._channel
        try:
            async with asyncio.timeout(self.connect_timeout):
                fresh = await self.connection.channel(publisher_confirms=True)
        except (AMQPError, ConnectionError, RuntimeError, TimeoutError):
            return
        self._channel = fresh
        self._exchanges.clear()  # declared through the stale channel
        if stale is not None:
            await finish_within(stale.close(), 1.0, "closing a RabbitMQ channel that stalled")

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
            if self.queue_args["x-queue-type"] == "quorum":
                # A delayed message must outlive the node it waits on, and reach its target
                # even if that node dies as it expires: at-least-once dead-lettering (which
                # needs reject-publish overflow) instead of the default at-most-once.
                arguments.update(
                    {
                        "x-queue-type": "quorum",
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    }
                )
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
        subscription = await RabbitSubscription(self, self, topic, group, prefetch).start(start)
        self.subscriptions.add(subscription)
        return subscription
