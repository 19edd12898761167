"""The lease engine of a Redis Streams subscription: one consumer name in one group.
It reads with XREADGROUP (the group's retry stream first), takes over the entries of dead
consumers with XAUTOCLAIM, moves what is due from the delay sets, and turns nack and release
into a copy on the retry stream plus an XACK of the original, in one MULTI."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from redis.exceptions import ResponseError

from mqkit.broker import Start
from mqkit.leasing import Claimed, Signal, Token
from mqkit.wire import FIRST_FAILED_AT
from mqkit_redis.client import Client
from mqkit_redis.fields import from_fields, with_attempt
from mqkit_redis.keys import Keys

log = logging.getLogger("mqkit.redis")


class StreamsLink(Protocol):
    """What a lease needs of its broker (RedisStreamsBroker), beyond the Broker interface."""

    client: Client
    keys: Keys
    block_ms: int
    maxlen: int | None
    move_due: Any  # the MOVE_DUE script, registered on the client

    def ack_later(self, stream: str, group: str, entry_id: bytes) -> None: ...

    async def park(
        self,
        pipe: Any,
        topic: str,
        fields: dict[bytes, bytes],
        delay: float,
        *,
        group: str | None = None,
        acking: tuple[str, str, bytes] | None = None,
    ) -> None: ...


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class StreamLease:
    """The LeaseEngine of one subscription: one consumer name in one group."""

    def __init__(self, broker: StreamsLink, topic: str) -> None:
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
        return self.broker.keys.retry(self.topic, group), self.topic

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
        await self.client.delete(retry, self.broker.keys.delay(topic, group))

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
            (self.broker.keys.delay(topic), main),
            (self.broker.keys.delay(topic, group), retry),
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
                await self.broker.park(
                    pipe, self.topic, fields, delay, group=group, acking=(stream, group, entry_id)
                )
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
