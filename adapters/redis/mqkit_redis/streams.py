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

Durability is Redis's own: with AOF (`appendonly yes`, fsync every second) an acked publish
survives a restart, losing at most the last second on a crash of the machine; without AOF
or RDB snapshots a restart loses every stream, group and pending entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from mqkit.broker import Start, Subscription
from mqkit.capabilities import Capabilities
from mqkit.leasing import Claimed, LeasedSubscription, LeasingBroker, Signal, Token
from mqkit.message import Message
from mqkit.wire import FIRST_FAILED_AT
from mqkit_redis import client as redis_client
from mqkit_redis.fields import from_fields, to_fields, with_attempt

log = logging.getLogger("mqkit.redis")

# Move entries that are due from a sorted set into a stream. KEYS: zset, stream.
# ARGV: maxlen ('' for none), how many at most. Returns {moved, ms until the next is due or -1}.
_MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, key in ipairs(due) do
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then
    if ARGV[1] == '' then
      redis.call('XADD', KEYS[2], '*', unpack(fields))
    else
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
    end
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], key)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #nxt > 0 then wait = math.max(0, tonumber(nxt[2]) - now) end
return {#due, wait}
"""

# Park an entry until later, optionally acking the delivery it replaces, atomically. Its due
# time is rounded up to the millisecond (the due check rounds down): never early.
# KEYS: zset, hash for the entry, stream to ack. ARGV: delay ms, group ('' for no ack), id,
# then field, value, ...
_SCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), KEYS[2])
if ARGV[2] ~= '' then redis.call('XACK', KEYS[3], ARGV[2], ARGV[3]) end
return 1
"""


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class RedisStreamsBroker(LeasingBroker):
    capabilities = Capabilities(
        durable=True,
        consumer_groups=True,
        redelivery=True,
        ordered_by_key=False,
        delayed_delivery=True,
        replay=True,
        selective_ack=True,
    )

    OPTIONS = (*LeasingBroker.OPTIONS, redis_client.MAXLEN, redis_client.PREFIX, redis_client.BLOCK)
    CLIENT_OPTIONS = redis_client.CLIENT_OPTIONS

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.maxlen: int | None = self.option(redis_client.MAXLEN) or None
        self.prefix = self.option(redis_client.PREFIX)
        self.block_ms = int(self.option(redis_client.BLOCK) * 1000)
        self.client = redis_client.connect(url)
        self.move_due = self.client.register_script(_MOVE_DUE)
        self.schedule = self.client.register_script(_SCHEDULE)
        self._acks: list[tuple[str, str, bytes]] = []
        self._acks_waiting = asyncio.Event()
        self._ack_task: asyncio.Task[None] | None = None
        self._trim_task: asyncio.Task[None] | None = None
        self._written: set[str] = set()

    def delay_key(self, topic: str, group: str | None = None) -> str:
        return f"{self.prefix}delay:{group}:{topic}" if group else f"{self.prefix}delay:{topic}"

    def retry_key(self, topic: str, group: str) -> str:
        return f"{self.prefix}retry:{group}:{topic}"

    def parked_key(self) -> str:
        return f"{self.prefix}parked:{uuid.uuid4().hex}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        await redis_client.ping(self.client, self.url)
        self._ack_task = asyncio.create_task(self._flush_acks(), name="mqkit-redis-acks")
        self._trim_task = asyncio.create_task(self._trim(), name="mqkit-redis-trim")

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
        if len(messages) == 1 and not delay:
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
                    await self.park(pipe, self.delay_key(message.topic), fields, delay)
                else:
                    pipe.xadd(message.topic, fields)  # type: ignore[arg-type]
            await pipe.execute()

        await redis_client.within(self.publish_timeout, self.url, "publish", send)

    async def park(
        self,
        pipe: Any,
        zset: str,
        fields: dict[bytes, bytes],
        delay: float,
        *,
        acking: tuple[str, str, bytes] | None = None,
    ) -> None:
        """Queue on `pipe` the _SCHEDULE script: keep `fields` in `zset` until `delay` has
        passed, acking the delivery `acking` (stream, group, entry id) in the same step."""
        stream, group, entry_id = acking or ("", "", b"")
        args: list[Any] = [math.ceil(delay * 1000), group, entry_id]  # never early
        for k, v in fields.items():
            args += [k, v]
        keys = [zset, self.parked_key(), stream or zset]
        await self.schedule(keys=keys, args=args, client=pipe)

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


class StreamLease:
    """The LeaseEngine of one subscription: one consumer name in one group."""

    def __init__(self, broker: RedisStreamsBroker, topic: str) -> None:
        self.broker = broker
        self.client = broker.client
        self.signal = Signal()
        self.consumer = _consumer_name()
        self.topic = topic
        self._held: dict[Token, dict[bytes, bytes]] = {}
        self._next_reclaim = 0.0
        self._next_move = 0.0
        self._known_due: float | None = None

    def _streams(self, group: str) -> tuple[str, str]:
        return self.broker.retry_key(self.topic, group), self.topic

    async def create_group(self, topic: str, group: str, start: Start) -> None:
        retry, main = self._streams(group)
        await self._create(main, group, "0" if start == "earliest" else "$")
        await self._create(retry, group, "0")

    async def _create(self, stream: str, group: str, start_id: str) -> None:
        try:
            await self.client.xgroup_create(stream, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def drop_group(self, topic: str, group: str) -> None:
        retry, main = self._streams(group)
        with contextlib.suppress(ResponseError):
            await self.client.xgroup_destroy(main, group)
        await self.client.delete(retry, self.broker.delay_key(topic, group))

    async def claim(
        self, topic: str, group: str, limit: int, lease: float
    ) -> tuple[list[Claimed], float | None]:
        retry, main = self._streams(group)
        next_due = await self._move_due(topic, group)
        try:
            claimed = await self._reclaim(group, limit, lease)
            if len(claimed) < limit:
                block = None if claimed else self.broker.block_ms
                if block is not None and next_due is not None:
                    block = max(1, min(block, int((next_due - time.time()) * 1000) + 1))
                response: Any = await self.client.xreadgroup(
                    group,
                    self.consumer,
                    {retry: ">", main: ">"},
                    count=limit - len(claimed),
                    block=block,
                )
                for stream, entries in response or []:
                    claimed += self._parse(stream.decode(), entries, {})
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or group vanished (a Redis restart without persistence, a manual
            # DEL): make them again rather than stop consuming.
            log.warning("mqkit: group %s of %s vanished; recreating it", group, topic)
            await self.create_group(topic, group, "earliest")
            return [], next_due
        return claimed, next_due

    def expect(self, due: float) -> None:
        if self._known_due is None or due < self._known_due:
            self._known_due = due

    async def _move_due(self, topic: str, group: str) -> float | None:
        """Move delayed entries that are due into their streams. Runs when one is known to be
        due, and every `block` interval to notice ones parked by other processes."""
        now = time.time()
        if now < self._next_move and (self._known_due is None or now < self._known_due):
            return self._known_due
        self._next_move = now + self.broker.block_ms / 1000
        retry, main = self._streams(group)
        maxlen = str(self.broker.maxlen or "")
        next_due: float | None = None
        for zset, target in (
            (self.broker.delay_key(topic), main),
            (self.broker.delay_key(topic, group), retry),
        ):
            _, wait_ms = await self.broker.move_due(keys=[zset, target], args=[maxlen, 500])
            if wait_ms >= 0:
                due = time.time() + wait_ms / 1000
                next_due = due if next_due is None else min(next_due, due)
        self._known_due = next_due
        return next_due

    async def _reclaim(self, group: str, limit: int, lease: float) -> list[Claimed]:
        """Take over entries left idle past the lease by consumers that died."""
        now = time.monotonic()
        if now < self._next_reclaim:
            return []
        self._next_reclaim = now + lease / 4
        out: list[Claimed] = []
        for stream in self._streams(group):
            result = await self.client.xautoclaim(
                stream, group, self.consumer, int(lease * 1000), "0-0", count=limit
            )
            entries = [e for e in result[1] if e and e[1]]
            if not entries:
                continue
            pending = await self.client.xpending_range(
                stream, group, min=entries[0][0], max=entries[-1][0], count=len(entries) + 100
            )
            counts: dict[bytes, int] = {}
            for p in pending:
                counts[p["message_id"]] = int(p["times_delivered"])  # type: ignore[index]
            out += self._parse(stream, entries, counts)
        return out

    def _parse(self, stream: str, entries: list[Any], delivered: dict[bytes, int]) -> list[Claimed]:
        out = []
        for entry_id, fields in entries:
            message = from_fields(self.topic, entry_id, fields, delivered.get(entry_id, 1))
            token = (stream, entry_id, message.attempt)
            self._held[token] = fields
            out.append(Claimed(message, token))
        return out

    async def ack(self, topic: str, group: str, tokens: Sequence[Token]) -> None:
        for token in tokens:
            self._held.pop(token, None)
            self.broker.ack_later(token[0], group, token[1])

    async def nack(
        self, topic: str, group: str, token: Token, delay: float, first_failed_at: str
    ) -> None:
        await self._requeue(
            group, [token], attempts=[token[2]], delay=delay, first_failed_at=first_failed_at
        )

    async def release(
        self, topic: str, group: str, tokens: Sequence[Token], *, undo_attempt: bool
    ) -> None:
        attempts = [t[2] - 1 if undo_attempt else t[2] for t in tokens]
        await self._requeue(group, tokens, attempts=attempts, delay=0.0)

    async def _requeue(
        self,
        group: str,
        tokens: Sequence[Token],
        *,
        attempts: list[int],
        delay: float,
        first_failed_at: str | None = None,
    ) -> None:
        """Copy entries to the group's retry stream (or park them), acking the originals."""
        retry, _ = self._streams(group)
        pipe = self.client.pipeline(transaction=True)
        for token, attempt in zip(tokens, attempts, strict=True):
            fields = self._held.pop(token, None)
            if fields is None:
                continue
            fields = with_attempt(fields, attempt)
            if first_failed_at is not None:
                fields.setdefault(FIRST_FAILED_AT.encode(), first_failed_at.encode())
            stream, entry_id = token[0], token[1]
            if delay > 0:
                self.expect(time.time() + delay)
                zset = self.broker.delay_key(self.topic, group)
                await self.broker.park(pipe, zset, fields, delay, acking=(stream, group, entry_id))
            else:
                pipe.xadd(retry, fields, maxlen=self.broker.maxlen, approximate=True)  # type: ignore[arg-type]
                pipe.xack(stream, group, entry_id)
        await pipe.execute()

    async def extend(self, topic: str, group: str, tokens: Sequence[Token], lease: float) -> None:
        by_stream: dict[str, list[Any]] = {}
        for stream, entry_id, _ in tokens:
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            # Claiming our own entries with min-idle 0 resets their idle time: the lease.
            await self.client.xclaim(stream, group, self.consumer, 0, ids, justid=True)
