"""`redis+pubsub://host:6379/0`: Redis pub/sub channels. Fan-out, at most once.

Every subscription receives every message published while it listens, whatever its group:
Redis pub/sub has no groups, no acknowledgements and no storage, so this backend claims none
of `durable`, `consumer_groups`, `redelivery`, `delayed_delivery` or `replay`. A message
published while nobody listens is gone; ack and nack do nothing; reject still publishes the
message to `<topic>.dlq` (to whoever listens there).

Subscriptions take glob patterns too (`orders.*`), through PSUBSCRIBE.

The same on Sentinel (`redis+pubsub+sentinel://s1:26379,s2:26379/MASTER/0`: on the primary,
followed across a failover) and on Redis Cluster (`redis+pubsub+cluster://h1:7000,h2:7001`:
sharded pub/sub by default where the servers have it, see pubsub_cluster.py). A subscriber
whose server goes away, or that Redis unsubscribes (a slot moved), listens again wherever
the channel is now; what was published in between is gone.

On the wire a message is `mqkit/1 {json meta}\\n` followed by the body, unchanged, so
`redis-cli SUBSCRIBE` shows the body as sent; a payload from another client without that
first line is the body itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from mqkit import codec
from mqkit.broker import Broker, Delivery, Start, Subscription
from mqkit.capabilities import Capabilities
from mqkit.errors import ConfigurationError, InvalidTopicError
from mqkit.message import Message
from mqkit_redis import client as redis_client
from mqkit_redis import pubsub_cluster

log = logging.getLogger("mqkit.redis")

MAGIC = b"mqkit/1 "
_PATTERN = re.compile(r"^[A-Za-z0-9._\-*?\[\]^]{1,249}$")
_SUBSCRIBED = ("subscribe", "psubscribe", "ssubscribe")
_UNSUBSCRIBED = ("unsubscribe", "punsubscribe", "sunsubscribe")
_MESSAGES = ("message", "pmessage", "smessage")


def is_pattern(topic: str) -> bool:
    return any(c in topic for c in "*?[")


def encode(message: Message) -> bytes:
    meta = {"id": message.id, "ct": message.content_type, "ts": message.timestamp}
    if message.key is not None:
        meta["key"] = message.key
    if message.headers:
        meta["h"] = dict(message.headers)
    return MAGIC + json.dumps(meta, separators=(",", ":")).encode() + b"\n" + message.body


def decode(channel: str, payload: bytes) -> Message:
    if payload.startswith(MAGIC):
        line, _, body = payload.partition(b"\n")
        try:
            meta = json.loads(line[len(MAGIC) :])
            return Message(
                topic=channel,
                body=body,
                id=meta["id"],
                key=meta.get("key"),
                headers=meta.get("h", {}),
                content_type=meta["ct"],
                timestamp=meta["ts"],
                attempt=1,
            )
        except (ValueError, KeyError, TypeError):
            pass  # not ours after all: deliver it as it came
    return Message(
        topic=channel,
        body=payload,
        id=str(uuid.uuid4()),
        content_type=codec.OCTET_STREAM,
        attempt=1,
    )


class PubSubDelivery(Delivery):
    async def _ack(self) -> None:
        pass  # nothing to acknowledge: pub/sub delivers at most once

    async def _nack(self, delay: float) -> None:
        log.warning("mqkit: nack on redis+pubsub drops %s: there is no redelivery", self.message.id)


class PubSubSubscription(Subscription):
    def __init__(self, broker: RedisPubSubBroker, topic: str, group: str | None) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.pattern = is_pattern(topic)
        self._pubsub: PubSub | None = None
        self._owner: aioredis.Redis | None = None  # the client of one cluster node, if any
        self._queue: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> PubSubSubscription:
        await self._listen()
        self._reader = asyncio.create_task(self._read(), name=f"mqkit-fetch-{self.topic}")
        return self

    async def _listen(self) -> None:
        """Subscribe and wait for Redis to confirm, so nothing published after is missed."""
        pubsub, owner = await self.broker.pubsub_for(self.topic)
        try:
            if self.pattern:
                await pubsub.psubscribe(self.topic)
            elif self.broker.sharded:
                await pubsub.ssubscribe(self.topic)
            else:
                await pubsub.subscribe(self.topic)
            async with asyncio.timeout(10):
                while True:
                    reply = await pubsub.get_message(timeout=1.0)
                    if reply and reply["type"] in _SUBSCRIBED:
                        break
        except BaseException:
            await _release(pubsub, owner)
            raise
        self._pubsub, self._owner = pubsub, owner

    async def _read(self) -> None:
        while not self._closing:
            try:
                assert self._pubsub is not None
                reply = await self._pubsub.get_message(timeout=1.0)
            except Exception as exc:  # the reader must outlive anything Redis answers
                log.info("mqkit: redis+pubsub on %s: %r; listening again", self.topic, exc)
                await self._reconnect()
                continue
            if reply is None:
                continue
            if reply["type"] in _UNSUBSCRIBED:
                # Not asked for: Redis Cluster unsubscribes a shard channel's listeners
                # when its slot moves (a failover, a resharding).
                await self._reconnect()
                continue
            if reply["type"] not in _MESSAGES:
                continue
            channel = reply["channel"].decode()
            message = decode(channel, reply["data"])
            await self._queue.put(PubSubDelivery(message, self.group, self.broker))

    async def _reconnect(self) -> None:
        """Listen again once Redis answers (what was sent meanwhile is lost)."""
        delay = 0.1
        while not self._closing:
            if self._pubsub is not None:
                await _release(self._pubsub, self._owner)
                self._pubsub = self._owner = None
            try:
                await self._listen()
                log.info("mqkit: redis+pubsub re-subscribed to %s", self.topic)
                return
            except Exception as exc:  # a node still named in a stale slot map, a failover
                log.debug("mqkit: redis+pubsub cannot listen to %s yet: %r", self.topic, exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def __anext__(self) -> Delivery:
        if self._closing and self._queue.empty():
            raise StopAsyncIteration
        delivery = await self._queue.get()
        if delivery is None:
            raise StopAsyncIteration
        return delivery

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await _release(self._pubsub, self._owner)
        self._queue.put_nowait(None)
        self.broker.subscriptions.discard(self)


async def _release(pubsub: PubSub, owner: aioredis.Redis | None) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pubsub.aclose(), 3)  # type: ignore[no-untyped-call]
    if owner is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(owner.aclose(), 3)


class RedisPubSubBroker(Broker):
    SYSTEM = "redis"
    capabilities = Capabilities()  # fan-out only; see the module docstring

    OPTIONS = (*Broker.OPTIONS, pubsub_cluster.SHARDED)
    CLIENT_OPTIONS = redis_client.CLIENT_OPTIONS

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sharding = self.option(pubsub_cluster.SHARDED)
        if pubsub_cluster.SHARDED.name in self.options and not pubsub_cluster.on_cluster(url):
            raise ConfigurationError(
                f"?sharded is for Redis Cluster (redis+pubsub+cluster://), not {self.safe_url}"
            )
        self.client = redis_client.connect(url)
        self.sharded = False  # known once started (`auto` asks the servers)
        self.subscriptions: set[PubSubSubscription] = set()

    async def _start(self) -> None:
        await redis_client.ping(self.client, self.url)
        if isinstance(self.client, RedisCluster):
            self.sharded = await pubsub_cluster.use_sharded(self.client, self.sharding)

    async def _check(self) -> None:
        await self.client.ping()

    async def _close(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self.subscriptions)))
        await self.client.aclose()

    async def pubsub_for(self, channel: str) -> tuple[PubSub, aioredis.Redis | None]:
        """A PubSub to listen to `channel` on, and the client to close with it (the one
        node's client on a cluster; else None: the PubSub has a connection of the broker's
        pool, the Sentinels' primary)."""
        if not isinstance(self.client, RedisCluster):
            return self.client.pubsub(), None
        node = await pubsub_cluster.node_for(self.client, channel, self.sharded)
        owner = pubsub_cluster.node_client(node)
        return owner.pubsub(), owner

    async def _send(self, messages: Sequence[Message], delay: float | None) -> None:
        if delay:
            raise ConfigurationError("redis+pubsub cannot delay messages (no delayed_delivery)")

        async def send() -> None:
            if isinstance(self.client, RedisCluster) and not self.sharded:
                await pubsub_cluster.publish_classic(self.client, messages, encode)
                return
            pipe = self.client.pipeline(transaction=False)
            for message in messages:
                if self.sharded:
                    pipe.spublish(message.topic, encode(message))
                else:
                    pipe.publish(message.topic, encode(message))
            await pipe.execute()

        await redis_client.within(self.publish_timeout, self.url, "publish", send)

    def validate_subscription_topic(self, topic: str) -> None:
        if not _PATTERN.match(topic):
            raise InvalidTopicError(f"invalid channel or pattern {topic!r}")

    async def _subscribe(
        self, topic: str, group: str | None, start: Start, prefetch: int
    ) -> Subscription:
        if self.sharded and is_pattern(topic):
            pubsub_cluster.refuse_pattern(topic)
        subscription = await PubSubSubscription(self, topic, group).start()
        self.subscriptions.add(subscription)
        return subscription
