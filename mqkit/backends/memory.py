"""`memory://[name]`: the in-process backend, for tests.

Same semantics as the sqlite backend (groups, leases, nack with delay, per-key order,
replay) with nothing on disk. `memory://` alone gives a private store; brokers connected to
the same `memory://name` in one process share it, so a test can publish through one and
consume through another.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mqkit.broker import Start
from mqkit.capabilities import Capabilities
from mqkit.errors import ClosedError
from mqkit.lag import Lag
from mqkit.leasing import Claimed, LeasingBroker, Signal, Token
from mqkit.message import Message
from mqkit.wire import FIRST_FAILED_AT


@dataclass(slots=True)
class _Entry:
    seq: int
    key: str | None
    attempt: int
    ready_at: float
    first_failed_at: str | None = None
    leased: bool = False  # claimed and not nacked or released since: in flight while it lasts


@dataclass(slots=True)
class _Group:
    cursor: int  # seq of the last log entry turned into a pending entry
    pending: dict[int, _Entry] = field(default_factory=dict)  # in seq order


@dataclass(slots=True)
class _Topic:
    log: list[tuple[Message, float]] = field(default_factory=list)  # (message, visible_at)
    groups: dict[str, _Group] = field(default_factory=dict)


class MemoryEngine:
    """The store behind memory brokers. seq n is log[n - 1]."""

    # How many log entries a claim may turn into pending entries ahead of the consumers.
    WINDOW = 1000

    def __init__(self) -> None:
        self.topics: dict[str, _Topic] = {}
        self.signal = Signal()

    def _topic(self, name: str) -> _Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = _Topic()
        return topic

    def _group(self, topic: str, group: str) -> _Group:
        try:
            return self.topics[topic].groups[group]
        except KeyError:
            raise ClosedError(f"group {group!r} of topic {topic!r} no longer exists") from None

    def append(self, messages: Sequence[Message], delay: float | None) -> None:
        visible_at = time.time() + (delay or 0.0)
        for message in messages:
            self._topic(message.topic).log.append((message, visible_at))
        self.signal.notify()

    async def create_group(self, topic: str, group: str, start: Start) -> None:
        t = self._topic(topic)
        if group not in t.groups:
            t.groups[group] = _Group(cursor=0 if start == "earliest" else len(t.log))

    async def drop_group(self, topic: str, group: str) -> None:
        self._topic(topic).groups.pop(group, None)

    async def claim(
        self, topic: str, group: str, limit: int, lease: float
    ) -> tuple[list[Claimed], float | None]:
        now = time.time()
        log = self._topic(topic).log
        g = self._group(topic, group)
        ready = sum(1 for e in g.pending.values() if e.ready_at <= now)
        if ready < self.WINDOW and g.cursor < len(log):
            end = min(len(log), g.cursor + self.WINDOW)
            for seq in range(g.cursor + 1, end + 1):
                message, visible_at = log[seq - 1]
                g.pending[seq] = _Entry(seq, message.key, 0, visible_at)
            g.cursor = end
        claimed: list[Claimed] = []
        next_due: float | None = None
        seen_keys: set[str] = set()
        for entry in g.pending.values():
            if entry.key is not None:
                if entry.key in seen_keys:
                    continue  # an earlier entry with this key is still pending
                seen_keys.add(entry.key)
            if entry.ready_at <= now:
                entry.attempt += 1
                entry.ready_at = now + lease
                entry.leased = True
                message = log[entry.seq - 1][0]
                if entry.first_failed_at is not None:
                    headers = {**message.headers, FIRST_FAILED_AT: entry.first_failed_at}
                    message = message.with_changes(headers=headers)
                claimed.append(
                    Claimed(message.with_changes(attempt=entry.attempt), (entry.seq, entry.attempt))
                )
                if len(claimed) >= limit:
                    break
            elif next_due is None or entry.ready_at < next_due:
                next_due = entry.ready_at
        return claimed, next_due

    def _entry(self, topic: str, group: str, token: Token) -> _Entry | None:
        g = self.topics.get(topic, _Topic()).groups.get(group)
        entry = g.pending.get(token[0]) if g else None
        return entry if entry is not None and entry.attempt == token[1] else None

    async def ack(self, topic: str, group: str, tokens: Sequence[Token]) -> None:
        g = self.topics.get(topic, _Topic()).groups.get(group)
        if g is None:
            return
        for seq, attempt in tokens:
            entry = g.pending.get(seq)
            if entry is not None and entry.attempt == attempt:
                del g.pending[seq]
        self.signal.notify()

    async def nack(
        self, topic: str, group: str, token: Token, delay: float, first_failed_at: str
    ) -> None:
        entry = self._entry(topic, group, token)
        if entry is not None:
            entry.ready_at = time.time() + delay
            entry.leased = False
            entry.first_failed_at = entry.first_failed_at or first_failed_at
            self.signal.notify()

    async def extend(self, topic: str, group: str, tokens: Sequence[Token], lease: float) -> None:
        now = time.time()
        for token in tokens:
            entry = self._entry(topic, group, token)
            if entry is not None and entry.ready_at > now:
                entry.ready_at = now + lease

    async def release(
        self, topic: str, group: str, tokens: Sequence[Token], *, undo_attempt: bool
    ) -> None:
        now = time.time()
        for token in tokens:
            entry = self._entry(topic, group, token)
            if entry is not None:
                entry.ready_at = now
                entry.leased = False
                if undo_attempt:
                    entry.attempt -= 1
        self.signal.notify()

    def lag(self, topic: str, group: str) -> Lag:
        now = time.time()
        t = self.topics.get(topic) or _Topic()
        g = t.groups.get(group) or _Group(cursor=0)  # a new group starts at the earliest
        in_flight = sum(1 for e in g.pending.values() if e.leased and e.ready_at > now)
        waiting = len(g.pending) - in_flight + len(t.log) - g.cursor
        oldest = next(iter(g.pending), g.cursor + 1 if g.cursor < len(t.log) else None)
        return Lag(
            topic,
            group,
            waiting=waiting,
            in_flight=in_flight,
            oldest_age=None if oldest is None else max(0.0, now - t.log[oldest - 1][0].timestamp),
        )


_named: dict[str, MemoryEngine] = {}


class MemoryBroker(LeasingBroker):
    SYSTEM = "mqkit.memory"
    engine: MemoryEngine
    capabilities = Capabilities(
        durable=False,
        consumer_groups=True,
        redelivery=True,
        ordered_by_key=True,
        delayed_delivery=True,
        replay=True,
        selective_ack=True,
        lag=True,
        lag_in_flight=True,
        lag_age=True,
    )

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        name = urlsplit(url).netloc + urlsplit(url).path.strip("/")
        if name:
            self.engine = _named.setdefault(name, MemoryEngine())
        else:
            self.engine = MemoryEngine()

    async def _start(self) -> None:
        pass

    async def _close(self) -> None:
        await self._close_subscriptions()

    async def _send(self, messages: Sequence[Message], delay: float | None) -> None:
        self.engine.append(messages, delay)

    async def _lag(self, topic: str, group: str) -> Lag:
        return self.engine.lag(topic, group)
