"""`redis://host:6379/0`: topics as Redis Streams, groups as consumer groups.

- Publish: XADD; retention trims each stream to about `?maxlen=1000000` entries (0 for
  no limit) every few seconds.
- Consume: XREADGROUP into a lease-based subscription (mqkit.leasing); acks are XACKs,
  batched in the background. Entries of a consumer that died are taken over with XAUTOCLAIM
  once idle for `?lease=30s`; a live consumer keeps its entries by resetting their idle time.
- Nack and release copy the entry to the group's retry stream (`mqkit:retry:{group}:{topic}`)
  and XACK the original in one MULTI, so other groups never see the copy. A delay puts the
  copy in a sorted set (`mqkit:delay:...`) instead; a Lua script run by the consumers moves
  due entries into the stream, timed by the Redis server's clock, never the clients'.
- Delayed publishes wait the same way in `mqkit:delay:{topic}` and then enter the stream.
- `?wait=N`: a publish returns once N replicas have it too (Redis WAIT, for at most
  `?wait_timeout=1s`; fewer is retried, then a PublishTimeoutError). Replication is
  asynchronous, so without it an acked publish that only the primary had is lost when a
  replica is promoted in its place.

Durability is Redis's own: with AOF (`appendonly yes`, fsync every second) an acked publish
survives a restart, losing at most the last second on a crash of the machine; without AOF
or RDB snapshots a restart loses every stream, group and pending entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from mqkit.broker import Start, Subscription
from mqkit.capabilities import Capabilities
from mqkit.errors import ConfigurationError
from mqkit.lag import Lag
from mqkit.leasing import LeasedSubscription, LeasingBroker
from mqkit.message import Message
from mqkit.urls import mask
from mqkit_redis import client as redis_client
from mqkit_redis.fields import to_fields
from mqkit_redis.keys import Keys
from mqkit_redis.lag import stream_lag
from mqkit_redis.lease import StreamLease
from mqkit_redis.scripts import MOVE_DUE, SCHEDULE

log = logging.getLogger("mqkit.redis")


class ReplicationError(RedisConnectionError):
    """Fewer replicas than `?wait=` acknowledged a publish in time: retried like an outage."""


class RedisStreamsBroker(LeasingBroker):
    SYSTEM = "redis"
    capabilities = Capabilities(
        durable=True,
        consumer_groups=True,
        redelivery=True,
        ordered_by_key=False,
        delayed_delivery=True,
        replay=True,
        selective_ack=True,
        lag=True,
        lag_in_flight=True,
        lag_age=True,
    )

    OPTIONS = (
        *LeasingBroker.OPTIONS,
        redis_client.MAXLEN,
        redis_client.PREFIX,
        redis_client.BLOCK,
        redis_client.WAIT,
        redis_client.WAIT_TIMEOUT,
    )
    CLIENT_OPTIONS = redis_client.CLIENT_OPTIONS

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.maxlen: int | None = self.option(redis_client.MAXLEN) or None
        self.prefix = self.option(redis_client.PREFIX)
        self.block_ms = int(self.option(redis_client.BLOCK) * 1000)
        self.wait_replicas = self.option(redis_client.WAIT)
        self.wait_ms = max(1, int(self.option(redis_client.WAIT_TIMEOUT) * 1000))
        self.client = redis_client.connect(url)
        self.keys = Keys(self.prefix, clustered=isinstance(self.client, RedisCluster))
        if self.keys.clustered and self.wait_replicas:
            # redis-py sends WAIT to every node on a connection of its own, where it waits for
            # nothing: it cannot wait for the replicas of the node that took the entry.
            raise ConfigurationError(f"?wait is not supported on Redis Cluster: {self.safe_url}")
        self.move_due = self.client.register_script(MOVE_DUE)
        self.schedule = self.client.register_script(SCHEDULE)
        self._acks: list[tuple[str, str, bytes]] = []
        self._acks_waiting = asyncio.Event()
        self._ack_task: asyncio.Task[None] | None = None
        self._trim_task: asyncio.Task[None] | None = None
        self._written: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        await redis_client.ping(self.client, self.url)
        self._ack_task = asyncio.create_task(self._flush_acks(), name="mqkit-redis-acks")
        self._trim_task = asyncio.create_task(self._trim(), name="mqkit-redis-trim")

    async def _check(self) -> None:
        await self.client.ping()

    async def _close(self) -> None:
        await self._close_subscriptions()
        for task in (self._ack_task, self._trim_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(*redis_client.NETWORK_ERRORS, TimeoutError):
            await asyncio.wait_for(self._write_acks(), 1.5)
        await self.client.aclose()

    # -- publishing --------------------------------------------------------------------------

    async def _send(self, messages: Sequence[Message], delay: float | None) -> None:
        self._written.update(m.topic for m in messages)
        if len(messages) == 1 and not delay and not self.wait_replicas:
            message = messages[0]
            fields: Any = to_fields(message)
            await redis_client.within(
                self.publish_timeout,
                self.url,
                "publish",
                lambda: self.client.xadd(message.topic, fields),
            )
            return

        async def send() -> None:
            pipe = self.client.pipeline(transaction=False)
            for message in messages:
                fields = to_fields(message)
                if delay:
                    self.note_due(message.topic, time.time() + delay)
                    await self.park(pipe, message.topic, fields, delay)
                else:
                    pipe.xadd(message.topic, fields)  # type: ignore[arg-type]
            if self.wait_replicas:
                pipe.wait(self.wait_replicas, self.wait_ms)
            replies = await pipe.execute()
            if self.wait_replicas and replies[-1] < self.wait_replicas:
                # Asynchronous replication: what only the primary has is lost with it. The
                # caller sends again (the same ids; a consumer may then see it twice).
                raise ReplicationError(
                    f"publish to {mask(self.url)}: {replies[-1]} of {self.wait_replicas} "
                    f"replicas had it within {self.wait_ms} ms"
                )

        await redis_client.within(self.publish_timeout, self.url, "publish", send)

    async def park(
        self,
        pipe: Any,
        topic: str,
        fields: dict[bytes, bytes],
        delay: float,
        *,
        group: str | None = None,
        acking: tuple[str, str, bytes] | None = None,
    ) -> None:
        """Queue on `pipe` the _SCHEDULE script: keep `fields` in the topic's delay set (the
        group's, for a retry) until `delay` has passed, acking the delivery `acking`
        (stream, group, entry id) in the same step."""
        zset = self.keys.delay(topic, group)
        stream, acking_group, entry_id = acking or ("", "", b"")
        args: list[Any] = [math.ceil(delay * 1000), acking_group, entry_id]  # never early
        for k, v in fields.items():
            args += [k, v]
        keys = [zset, self.keys.parked(topic), stream or zset]
        # redis-py refuses scripts in a cluster pipeline: there each runs on its own (it is
        # atomic by itself, its ack included).
        await self.schedule(keys=keys, args=args, client=None if self.keys.clustered else pipe)

    def note_due(self, topic: str, due: float) -> None:
        """Tell this process's consumers of `topic` when a parked message becomes due, so
        they move it on time rather than at their next periodic look."""
        for subscription in self._subscriptions:
            engine = subscription.engine
            if isinstance(engine, StreamLease) and engine.topic == topic:
                engine.expect(due)

    async def _trim(self) -> None:
        """Retention: trim the streams this broker wrote to, every few seconds, instead of a
        MAXLEN on every XADD (which costs every publish three more arguments)."""
        while True:
            await asyncio.sleep(5.0)
            if self.maxlen is None or not self._written:
                continue
            topics, self._written = self._written, set()
            with contextlib.suppress(*redis_client.NETWORK_ERRORS):
                pipe = self.client.pipeline(transaction=False)
                for topic in topics:
                    pipe.xtrim(topic, maxlen=self.maxlen, approximate=True)
                await pipe.execute()

    async def _lag(self, topic: str, group: str) -> Lag:
        return await stream_lag(self.client, self.keys, topic, group)

    # -- subscribing -------------------------------------------------------------------------

    async def _subscribe(
        self, topic: str, group: str | None, start: Start, prefetch: int
    ) -> Subscription:
        engine = StreamLease(self, topic)
        subscription = LeasedSubscription(
            self,
            engine,
            topic,
            group,
            prefetch=prefetch,
            lease=self.lease,
            max_idle=0.0,  # the engine blocks in XREADGROUP itself
            on_closed=self._subscriptions.discard,
        )
        await subscription.start(start)
        self._subscriptions.add(subscription)
        return subscription

    # -- acks, written in batches ------------------------------------------------------------

    def ack_later(self, stream: str, group: str, entry_id: bytes) -> None:
        self._acks.append((stream, group, entry_id))
        self._acks_waiting.set()

    async def _flush_acks(self) -> None:
        while True:
            await self._acks_waiting.wait()
            self._acks_waiting.clear()
            try:
                await self._write_acks()
            except redis_client.NETWORK_ERRORS:
                # Unwritten acks mean redeliveries later, never losses; try again shortly.
                log.warning("mqkit: acks to %s failed; retrying", self.safe_url)
                self._acks_waiting.set()
                await asyncio.sleep(0.5)

    async def _write_acks(self) -> None:
        if not self._acks:
            return
        batch, self._acks = self._acks, []
        by_stream: dict[tuple[str, str], list[bytes]] = {}
        for stream, group, entry_id in batch:
            by_stream.setdefault((stream, group), []).append(entry_id)
        pipe = self.client.pipeline(transaction=False)
        for (stream, group), ids in by_stream.items():
            pipe.xack(stream, group, *ids)
        try:
            await pipe.execute()
        except BaseException:
            self._acks = batch + self._acks
            raise
