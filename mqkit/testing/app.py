"""Testing your own handlers: `TestApp` runs your App on a fresh in-memory broker, with the
real `memory://` semantics (acks, nacks with delays, retries, the DLQ), so a test publishes,
waits until every message is settled, and looks at what happened. FastStream's TestBroker
is the peer; here nothing is patched, the worker runs as it does in production.

    async def test_billing() -> None:
        async with TestApp(app) as t:
            await t.publish("orders", {"id": 1, "amount": 9.5})
            await t.publish("orders", {"id": 2, "amount": -1})  # invalid
            await t.settled()
            assert t.stats("orders").handled == 1
            assert [d.error_type for d in await t.dead_letters("orders")] == ["DecodeError"]
"""

from __future__ import annotations

import collections
import contextlib
import uuid
from types import TracebackType
from typing import Any, Self

from mqkit.broker import Broker
from mqkit.dlq import DeadLetter, DeadLetters
from mqkit.message import Message
from mqkit.registry import connect
from mqkit.testing.waiting import until
from mqkit.worker import App, Stats, SubscriberSpec


class TestApp:
    __test__ = False  # a helper, not a class of tests, for pytest

    def __init__(self, app: App, url: str | None = None) -> None:
        """`url`: the broker to run on; default a fresh `memory://` of its own."""
        self.app = app
        self.broker: Broker = connect(url or f"memory://test-app-{uuid.uuid4().hex}")
        self._expected: collections.Counter[str] = collections.Counter()
        self._exit = contextlib.AsyncExitStack()
        self._saved: Broker | None = None

    async def __aenter__(self) -> Self:
        self._saved, self.app._broker = self.app._broker, self.broker
        try:
            await self._exit.enter_async_context(self.app.running())
        except BaseException:
            await self._restore()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._exit.aclose()
        finally:
            await self._restore()

    async def _restore(self) -> None:
        await self.broker.close()
        self.app._broker = self._saved

    async def publish(self, topic: str, payload: Any = b"", **options: Any) -> Message:
        """Publish as Broker.publish does; `settled()` then waits for it in every subscriber
        of the topic."""
        message = await self.broker.publish(topic, payload, **options)
        for spec in self.app.subscribers:
            if spec.topic == topic:
                self._expected[spec.name] += 1
        return message

    async def settled(self, timeout: float = 10.0) -> None:
        """Until each message published here is handled, skipped or dead-lettered by every
        subscriber of its topic (retries included, delays waited for); TimeoutError after
        `timeout` seconds. Messages the handlers publish themselves are not waited for."""
        await until(self._all_settled, timeout)

    def _all_settled(self) -> bool:
        return all(
            _finished(spec.stats) >= self._expected[spec.name] and spec.stats.in_flight == 0
            for spec in self.app.subscribers
        )

    def stats(self, topic: str, group: str | None = None) -> Stats:
        """The stats of the subscriber of `topic` (in `group`, when several read it)."""
        return self._subscriber(topic, group).stats

    async def dead_letters(self, topic: str, group: str | None = None) -> list[DeadLetter]:
        """What `topic`'s subscribers (or those of `group`) dead-lettered, oldest first."""
        return await DeadLetters(self.broker, topic, idle=0.3).list(group=group)

    def _subscriber(self, topic: str, group: str | None) -> SubscriberSpec:
        found = [s for s in self.app.subscribers if s.topic == topic and group in (None, s.group)]
        if len(found) != 1:
            groups = sorted(s.group for s in found)
            raise LookupError(
                f"{len(found)} subscribers of {topic!r}"
                + (f" (groups {groups}): name the group" if found else "")
            )
        return found[0]


def _finished(stats: Stats) -> int:
    return stats.handled + stats.duplicates + stats.skipped + stats.dead_lettered
