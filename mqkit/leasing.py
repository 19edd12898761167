"""Subscriptions for backends that hand out messages under a lease.

The built-in backends (`memory://`, `sqlite://`) keep every topic as an append-only log and
every consumer group as a cursor into it plus a set of pending entries (delivered or due, not
yet acked), the way a Redis Stream keeps its PEL. A consumer *claims* pending entries with a
lease: an entry whose lease runs out (its consumer died) becomes claimable again. Within a
group an entry with a key is claimable only when no earlier entry with that key is pending,
which is what keeps per-key order across competing consumers, nacks and delays.

Any backend that can claim, ack, nack, extend and release (`LeaseEngine`) gets its
subscriptions and deliveries from here: buffering up to `prefetch`, lease extension while a
message is held, and handing everything back on close. The Redis Streams adapter is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mqkit import options
from mqkit.broker import Broker, Delivery, Start, Subscription
from mqkit.errors import ClosedError
from mqkit.message import Message

log = logging.getLogger("mqkit")

# Identifies one claim of one entry; the engine decides its shape. The built-in backends use
# (sequence number, delivery attempt): the attempt fences settlements, so an ack from a
# consumer whose lease ran out, after the entry was claimed again, matches nothing.
Token = tuple[Any, ...]

EPHEMERAL_PREFIX = "~private-"


@dataclass(slots=True)
class Claimed:
    message: Message
    token: Token


class Signal:
    """A versioned wake-up: waiters sleep until something changed after the version they saw."""

    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait_newer(self, version: int, at_most: float) -> None:
        if self.version != version or at_most <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), at_most)


class LeaseEngine(Protocol):
    signal: Signal

    async def create_group(self, topic: str, group: str, start: Start) -> None: ...

    async def drop_group(self, topic: str, group: str) -> None: ...

    async def claim(
        self, topic: str, group: str, limit: int, lease: float
    ) -> tuple[list[Claimed], float | None]:
        """Up to `limit` claimable entries, leased for `lease` seconds, and when the next
        not-yet-claimable entry becomes due (None if none is waiting on time)."""
        ...

    async def ack(self, topic: str, group: str, tokens: Sequence[Token]) -> None: ...

    async def nack(
        self, topic: str, group: str, token: Token, delay: float, first_failed_at: str
    ) -> None:
        """Make the entry claimable after `delay`; its next deliveries carry the header
        mqkit-first-failed-at (the value of the first nack wins)."""
        ...

    async def extend(
        self, topic: str, group: str, tokens: Sequence[Token], lease: float
    ) -> None: ...

    async def release(
        self, topic: str, group: str, tokens: Sequence[Token], *, undo_attempt: bool
    ) -> None:
        """Make entries claimable now; `undo_attempt` for ones that never reached a handler."""
        ...


def private_group() -> str:
    return EPHEMERAL_PREFIX + uuid.uuid4().hex


class LeasedDelivery(Delivery):
    def __init__(self, claimed: Claimed, subscription: LeasedSubscription) -> None:
        super().__init__(claimed.message, subscription.group, subscription.broker)
        self.token = claimed.token
        self._sub = subscription

    async def _ack(self) -> None:
        try:
            await self._sub.engine.ack(self._sub.topic, self._sub.engine_group, [self.token])
        finally:
            self._sub.settled(self)

    @classmethod
    async def _ack_many(cls, deliveries: Sequence[LeasedDelivery]) -> None:
        by_subscription: dict[LeasedSubscription, list[LeasedDelivery]] = {}
        for delivery in deliveries:
            by_subscription.setdefault(delivery._sub, []).append(delivery)
        for sub, settling in by_subscription.items():
            try:  # one engine call: one transaction (SQLite), one XACK (Redis)
                await sub.engine.ack(sub.topic, sub.engine_group, [d.token for d in settling])
            finally:
                for delivery in settling:
                    sub.settled(delivery)

    async def _nack(self, delay: float) -> None:
        try:
            await self._sub.engine.nack(
                self._sub.topic, self._sub.engine_group, self.token, delay, self.first_failed_at()
            )
        finally:
            self._sub.settled(self)


class LeasedSubscription(Subscription):
    """Claims in the background into a buffer of at most `prefetch` unsettled deliveries.

    Claiming runs in its own task so that a consumer cancelled while waiting never loses a
    claimed message; leases of everything outstanding are extended while it is held.
    """

    def __init__(
        self,
        broker: Broker,
        engine: LeaseEngine,
        topic: str,
        group: str | None,
        *,
        prefetch: int,
        lease: float,
        max_idle: float = 1.0,
        on_closed: Callable[[LeasedSubscription], None] | None = None,
    ) -> None:
        self.broker = broker
        self.engine = engine
        self.topic = topic
        self.group = group
        self.engine_group = group if group is not None else private_group()
        self._prefetch = prefetch
        self._lease = lease
        self._max_idle = max_idle
        self._buffer: deque[LeasedDelivery] = deque()
        self._unsettled: dict[Token, LeasedDelivery] = {}
        self._nonempty = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_closed = on_closed

    async def start(self, start: Start) -> LeasedSubscription:
        await self.engine.create_group(self.topic, self.engine_group, start)
        self._tasks = [
            asyncio.create_task(self._fetch_loop(), name=f"mqkit-fetch-{self.topic}"),
            asyncio.create_task(self._lease_loop(), name=f"mqkit-lease-{self.topic}"),
        ]
        return self

    # -- consumer side -----------------------------------------------------------------------

    async def __anext__(self) -> LeasedDelivery:
        while not self._buffer:
            if self._closing:
                raise StopAsyncIteration
            self._nonempty.clear()
            await self._nonempty.wait()
        delivery = self._buffer.popleft()
        self._unsettled[delivery.token] = delivery
        if not self._buffer:
            self._room.set()
        return delivery

    def settled(self, delivery: LeasedDelivery) -> None:
        self._unsettled.pop(delivery.token, None)
        if not self._buffer or self._outstanding() <= self._prefetch // 2:
            self._room.set()

    # -- background --------------------------------------------------------------------------

    def _outstanding(self) -> int:
        return len(self._buffer) + len(self._unsettled)

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._closing:
            room = self._prefetch - self._outstanding()
            # Refill in batches: one claim per half buffer, not one per settled message.
            if room <= 0 or (self._buffer and room < self._prefetch // 2):
                self._room.clear()
                await self._room.wait()
                continue
            version = self.engine.signal.version
            try:
                claimed, next_due = await self.engine.claim(
                    self.topic, self.engine_group, room, self._lease
                )
            except ClosedError:
                return
            except Exception as exc:
                # The store is failing or out of reach (disk full, a broker restart): keep
                # the consumer alive and try again, more slowly each time.
                failures += 1
                log.warning("mqkit: claiming from %s failed (%r); retrying", self.topic, exc)
                await asyncio.sleep(min(5.0, 0.05 * 2**failures))
                continue
            failures = 0
            for item in claimed:
                self._buffer.append(LeasedDelivery(item, self))
            if claimed:
                self._nonempty.set()
            if len(claimed) == room:
                continue
            wait = self._max_idle
            if next_due is not None:
                wait = min(wait, max(0.0, next_due - time.time()) + 0.001)
            await self.engine.signal.wait_newer(version, wait)

    async def _lease_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._lease / 3)
            tokens = [d.token for d in self._buffer] + list(self._unsettled)
            if tokens and not self._closing:
                with contextlib.suppress(ClosedError):
                    await self.engine.extend(self.topic, self.engine_group, tokens, self._lease)

    # -- closing -----------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._nonempty.set()
        self._room.set()
        self.engine.signal.notify()
        fetch, lease = self._tasks or (None, None)
        if lease is not None:
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease
        if fetch is not None:
            # Let an in-progress claim finish so that what it claimed is released below rather
            # than left leased; cancel only if the store does not answer.
            try:
                await asyncio.wait_for(asyncio.shield(fetch), 1.5)
            except TimeoutError:
                fetch.cancel()
        never_seen = [d.token for d in self._buffer]
        self._buffer.clear()
        in_hand = list(self._unsettled)
        try:
            # Hand back at once what was claimed and not finished. If the store cannot be
            # reached, the leases run out and the messages come back all the same.
            async with asyncio.timeout(1.5):  # close() must return within 5 s, even then
                if never_seen:
                    await self.engine.release(
                        self.topic, self.engine_group, never_seen, undo_attempt=True
                    )
                if in_hand:
                    await self.engine.release(
                        self.topic, self.engine_group, in_hand, undo_attempt=False
                    )
                if self.group is None:
                    await self.engine.drop_group(self.topic, self.engine_group)
        except ClosedError:
            pass
        except Exception as exc:
            log.warning(
                "mqkit: could not hand back %d message(s) of %s on close (%s); they return "
                "when their leases expire",
                len(never_seen) + len(in_hand),
                self.topic,
                exc,
            )
        finally:
            self._closed.set()
            if self._on_closed is not None:
                self._on_closed(self)


LEASE = options.duration(
    "lease",
    "30s",
    "how long a delivered message stays hidden before another consumer gets it",
    positive=True,
)


class LeasingBroker(Broker):
    """Base of the built-in backends: subscriptions are LeasedSubscriptions over `self.engine`."""

    engine: LeaseEngine

    OPTIONS = (*Broker.OPTIONS, LEASE)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.lease = self.option(LEASE)
        self._subscriptions: set[LeasedSubscription] = set()

    async def _subscribe(
        self, topic: str, group: str | None, start: Start, prefetch: int
    ) -> Subscription:
        subscription = LeasedSubscription(
            self,
            self.engine,
            topic,
            group,
            prefetch=prefetch,
            lease=self.lease,
            on_closed=self._subscriptions.discard,
        )
        await subscription.start(start)
        self._subscriptions.add(subscription)
        return subscription

    async def _close_subscriptions(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self._subscriptions)))
