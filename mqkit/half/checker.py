"""The check-back: resolve half messages whose producer never said commit or rollback.

    async def check(message: Message) -> Resolution:
        order = await db.get(Order, message.key)
        return Resolution.COMMIT if order else Resolution.ROLLBACK

    checker = HalfChecker(broker, store, check, group="orders-service")
    await checker.run(stop)               # or `mqkit half checker app:check ...`

Each round claims the group's messages whose check time has passed (exclusively: any number
of checkers can run), asks `check`, and acts: COMMIT publishes, ROLLBACK drops, UNKNOWN (or
a check that raises or takes longer than `check_timeout`) asks again after `interval`. After
`max_checks` checks the message goes to `<topic>.dlq` with the reason: never a silent
discard. A message left mid-commit by a dead producer is published without asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mqkit.broker import Broker
from mqkit.half.defaults import DEFAULT_INTERVAL, DEFAULT_MAX_CHECKS
from mqkit.half.producer import COMMIT_LEASE
from mqkit.half.store import (
    COMMITTING,
    DEAD_LETTERED,
    ROLLED_BACK,
    HalfRecord,
    HalfStore,
    Resolution,
)
from mqkit.message import Message
from mqkit.stats import Counters
from mqkit.telemetry import metering, polling, tracing
from mqkit.wire import dead_letter_copy

log = logging.getLogger("mqkit.half")

Check = Callable[[Message], Resolution | Awaitable[Resolution]]

RESOLVED_KEPT = 86_400.0  # resolved records answer late commits for a day, then are purged
_RESOLVED = ("committed", "rolled_back", "dead_lettered", "finished")
PENDING_COUNTED = 100_000  # the pending gauge counts this many at most


@dataclass
class CheckerStats(Counters):
    committed: int = 0
    rolled_back: int = 0
    unknown: int = 0
    dead_lettered: int = 0
    finished: int = 0  # commits a dead producer left half done


class HalfChecker:
    def __init__(
        self,
        broker: Broker,
        store: HalfStore,
        check: Check,
        *,
        group: str = "default",
        interval: float = DEFAULT_INTERVAL,
        max_checks: int = DEFAULT_MAX_CHECKS,
        check_timeout: float = 10.0,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        metrics_interval: float = polling.DEFAULT_INTERVAL,
    ) -> None:
        if max_checks < 1:
            raise ValueError("max_checks must be at least 1")
        self.broker = broker
        self.store = store
        self.check = check
        self.group = group
        self.interval = interval
        self.max_checks = max_checks
        self.check_timeout = check_timeout
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.metrics_interval = metrics_interval  # how often the pending gauge is read
        self.stats = CheckerStats()
        self._me = f"check-{uuid.uuid4().hex}"

    async def close(self) -> None:
        """Nothing of its own to release: the store and the broker are the caller's."""

    async def check_once(self) -> int:
        """One round: claim what is due and resolve it; the number of messages looked at."""
        due = await self.store.claim_due(
            self.group, self._me, time.time(), self.interval, self.batch_size
        )
        await asyncio.gather(*(self._resolve(record) for record in due))
        return len(due)

    async def _resolve(self, record: HalfRecord) -> None:
        tracer = tracing.tracer()
        if tracer is None:
            self._count(await self._decide(record))
            return
        from mqkit.telemetry import spans

        # In the trace of the producer that prepared the message: a checker's loop has none.
        name = "commit" if record.state == COMMITTING else "check"
        attributes: dict[str, str | int] = {
            "messaging.system": self.broker.SYSTEM,
            "mqkit.half.group": self.group,
            "mqkit.half.checks": record.checks,
        }
        with spans.stage(tracer, name, record.message, attributes, own_trace=True) as span:
            outcome = await self._decide(record)
            span.set_attribute("mqkit.half.outcome", outcome)
        self._count(outcome)

    def _count(self, outcome: str) -> None:
        meters = metering.instruments()
        if meters is not None and outcome in _RESOLVED:
            attributes = {"mqkit.half.group": self.group, "mqkit.half.outcome": outcome}
            meters.half_resolved.add(1, attributes)

    async def _decide(self, record: HalfRecord) -> str:
        """Ask and act; what became of the message (`taken`: another checker or the
        producer resolved it meanwhile)."""
        message = record.message
        if record.state == COMMITTING:  # its committer died after deciding
            await self._publish(message)
            self.stats.finished += 1
            return "finished"
        resolution = await self._ask(message)
        if resolution is Resolution.COMMIT:
            if await self.store.begin_commit(message.id, self._me, COMMIT_LEASE, held_by=self._me):
                await self._publish(message)
                self.stats.committed += 1
                return "committed"
        elif resolution is Resolution.ROLLBACK:
            if await self.store.resolve(message.id, ROLLED_BACK, held_by=self._me):
                self.stats.rolled_back += 1
                return "rolled_back"
        elif record.checks >= self.max_checks:
            return "dead_lettered" if await self._dead_letter(message, record.checks) else "taken"
        else:
            self.stats.unknown += 1  # asked again after the interval the claim set
            return "unknown"
        return "taken"

    async def _ask(self, message: Message) -> Resolution:
        try:
            if inspect.iscoroutinefunction(self.check):
                answer = await asyncio.wait_for(self.check(message), self.check_timeout)
            else:  # a blocking check (a sync database call, say) runs off the event loop
                answer = await asyncio.wait_for(
                    asyncio.to_thread(self.check, message), self.check_timeout
                )
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, self.check_timeout)
            return Resolution(answer)
        except Exception as exc:  # the user's check failed: that is an unknown outcome
            log.warning("half message %s: check failed (%r); asking again later", message.id, exc)
            return Resolution.UNKNOWN

    async def _publish(self, message: Message) -> None:
        await self.broker.send([message], created=True)
        await self.store.finish_commit(message.id, self._me)

    async def _dead_letter(self, message: Message, checks: int) -> bool:
        reason = (
            f"half message unresolved: the check of group {self.group!r} answered UNKNOWN "
            f"{checks} times"
        )
        # The DLQ copy goes first: a crash right after it leaves a duplicate note, never none.
        await self.broker.dead_letter([dead_letter_copy(message, reason, group=self.group)])
        if not await self.store.resolve(message.id, DEAD_LETTERED, held_by=self._me, reason=reason):
            return False
        self.stats.dead_lettered += 1
        log.error("%s: %s (sent to %s.dlq)", message.id, reason, message.topic)
        return True

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Check until `stop` is set. Store and broker failures are logged and retried."""
        stop = stop or asyncio.Event()
        pending = self._meter_pending()
        try:
            await self._run(stop)
        finally:
            await polling.stop(pending)

    def _meter_pending(self) -> asyncio.Task[None] | None:
        meters = metering.instruments()
        if meters is None:
            return None

        async def read() -> None:
            active = await self.store.records(self.group, limit=PENDING_COUNTED)
            meters.set("mqkit.half.pending", len(active), {"mqkit.half.group": self.group})

        return polling.start(self.metrics_interval, read, "pending half messages")

    async def _run(self, stop: asyncio.Event) -> None:
        purged_at = 0.0
        while not stop.is_set():
            try:
                n = await self.check_once()
                if time.monotonic() - purged_at > 3600:
                    await self.store.purge_resolved(time.time() - RESOLVED_KEPT)
                    purged_at = time.monotonic()
            except Exception as exc:  # the store or the broker is down: try the next round
                log.warning("half checker: %s (retrying)", exc)
                n = 0
            if n < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval)
