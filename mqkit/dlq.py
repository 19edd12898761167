"""Dead-letter queues: what failed, why, and putting it back.

A message that exhausted its attempts, or could not be decoded, is published to
`<topic>.dlq` with headers saying where it came from and why (see `Delivery.reject`). This
module reads those topics through the consumer group `mqkit-dlq`, which every backend keeps
from the first dead letter on, so listing works even when nobody subscribed before:

    dlq = DeadLetters(broker, "orders")
    for dead in await dlq.list(group="billing"):
        print(dead.id, dead.attempts, dead.error)
    await dlq.replay(ids=[...])

Listing leaves every entry where it is. Replay publishes the message back to its original
topic with the same id and attempts counted from 1, addressed to the group that gave up on it
(header `mqkit-replay-group`: mqkit apps in other groups acknowledge it without running
their handler), then removes it from the DLQ. Purge removes without publishing.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from mqkit.broker import Broker, Delivery
from mqkit.message import Message
from mqkit.wire import (
    ATTEMPTS,
    DEAD_LETTER_HEADERS,
    DLQ_GROUP,
    ERROR,
    ERROR_TYPE,
    FIRST_FAILED_AT,
    GROUP,
    LAST_FAILED_AT,
    ORIGINAL_KEY,
    ORIGINAL_TOPIC,
    REPLAY_GROUP,
    dlq_topic,
)

__all__ = [  # the header names stay importable from here, where they were first
    "ATTEMPTS",
    "DEAD_LETTER_HEADERS",
    "ERROR",
    "ERROR_TYPE",
    "FIRST_FAILED_AT",
    "GROUP",
    "LAST_FAILED_AT",
    "ORIGINAL_KEY",
    "ORIGINAL_TOPIC",
    "REPLAY_GROUP",
    "DeadLetter",
    "DeadLetters",
]

Action = Literal["keep", "replay", "drop"]

# Entries a scan holds unacknowledged at once (AMQP's prefetch is at most 65,535); a scan
# that keeps more than this many sees no further.
MAX_HELD = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message  # as stored in the DLQ, with mqkit's dead-letter headers

    @property
    def id(self) -> str:
        return self.message.id

    @property
    def original_topic(self) -> str:
        return self.message.headers.get(ORIGINAL_TOPIC) or self.message.topic.removesuffix(".dlq")

    @property
    def key(self) -> str | None:
        return self.message.headers.get(ORIGINAL_KEY, self.message.key)

    @property
    def group(self) -> str:
        return self.message.headers.get(GROUP, "")

    @property
    def attempts(self) -> int:
        return int(self.message.headers.get(ATTEMPTS, "0") or 0)

    @property
    def error(self) -> str:
        return self.message.headers.get(ERROR, "")

    @property
    def error_type(self) -> str:
        return self.message.headers.get(ERROR_TYPE, "")

    @property
    def first_failed_at(self) -> float | None:
        return _float(self.message.headers.get(FIRST_FAILED_AT))

    @property
    def last_failed_at(self) -> float | None:
        return _float(self.message.headers.get(LAST_FAILED_AT))

    def age(self, now: float | None = None) -> float:
        """Seconds since the message was given up on."""
        since = self.last_failed_at or self.message.timestamp
        return max(0.0, (now or time.time()) - since)

    def original(self) -> Message:
        """The message as it goes back to its topic: dead-letter headers off, attempt reset."""
        headers = {k: v for k, v in self.message.headers.items() if k not in DEAD_LETTER_HEADERS}
        if self.group:
            headers[REPLAY_GROUP] = self.group
        return self.message.with_changes(
            topic=self.original_topic, key=self.key, headers=headers, attempt=0
        )


class DeadLetters:
    """The dead-letter queue of one topic on one broker.

    Every operation reads the DLQ from where the `mqkit-dlq` group stands until nothing new
    arrives for `idle` seconds, and leaves what it does not remove for next time.
    """

    def __init__(self, broker: Broker, topic: str, *, idle: float = 1.5) -> None:
        self.broker = broker
        self.topic = topic.removesuffix(".dlq")
        self.dlq = dlq_topic(self.topic)
        self.idle = idle

    async def list(self, *, group: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        found: list[DeadLetter] = []

        def look(dead: DeadLetter) -> Action:
            if _matches(dead, group, None) and len(found) < limit:
                found.append(dead)
            return "keep"

        await self._scan(look, limit=limit)
        return found

    async def get(self, message_id: str, *, group: str | None = None) -> DeadLetter | None:
        """The entry with this id (several groups may have given up on one message)."""
        found = [d for d in await self.list(group=group, limit=MAX_HELD) if d.id == message_id]
        return found[0] if found else None

    async def replay(
        self, *, group: str | None = None, ids: Iterable[str] | None = None
    ) -> builtins.list[DeadLetter]:
        """Put matching entries (all of `group`'s, or just `ids`) back on their topic."""
        return await self._take(group, ids, "replay")

    async def purge(
        self, *, group: str | None = None, ids: Iterable[str] | None = None
    ) -> builtins.list[DeadLetter]:
        """Remove matching entries for good."""
        return await self._take(group, ids, "drop")

    async def _take(
        self, group: str | None, ids: Iterable[str] | None, action: Action
    ) -> builtins.list[DeadLetter]:
        wanted = set(ids) if ids is not None else None
        taken: builtins.list[DeadLetter] = []

        def pick(dead: DeadLetter) -> Action:
            if _matches(dead, group, wanted):
                taken.append(dead)
                return action
            return "keep"

        await self._scan(pick, limit=MAX_HELD)
        return taken

    async def _scan(self, decide: Callable[[DeadLetter], Action], *, limit: int) -> None:
        selective = self.broker.capabilities.selective_ack
        kept: builtins.list[Delivery] = []
        removed_any = False
        seen: set[tuple[str, str]] = set()
        sub = await self.broker.subscribe(
            self.dlq, group=DLQ_GROUP, start="earliest", prefetch=min(max(limit, 100), MAX_HELD)
        )
        try:
            while True:
                try:
                    delivery = await asyncio.wait_for(anext(sub), self.idle)
                except (TimeoutError, StopAsyncIteration):
                    break
                dead = DeadLetter(delivery.message)
                if (dead.id, dead.group) in seen:  # a copy left by an interrupted rotation
                    await delivery.ack()
                    continue
                seen.add((dead.id, dead.group))
                action = decide(dead)
                if action == "replay":  # still in the trace that dead-lettered it
                    await self.broker.send([dead.original()], created=True)
                if action == "keep":
                    kept.append(delivery)
                else:
                    await delivery.ack()
                    removed_any = True
            if removed_any and not selective and kept:
                await self._rotate(kept)
        finally:
            await sub.close()  # hands back everything kept

    async def _rotate(self, kept: Sequence[Delivery]) -> None:
        """On a log whose acks are cumulative (Kafka), what stays must move behind what went,
        or the removed entries would come back: republish it (same id), then ack it."""
        await self.broker.send([d.message.with_changes(attempt=0) for d in kept], created=True)
        for delivery in kept:
            await delivery.ack()


def _matches(dead: DeadLetter, group: str | None, ids: set[str] | None) -> bool:
    if group is not None and dead.group != group:
        return False
    return ids is None or dead.id in ids


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
