"""The stats policy: what a subscriber did, counted by each message's outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mqkit.middleware import CallNext, Context, Middleware, Outcome
from mqkit.stats import Counters


@dataclass(slots=True)
class Stats(Counters):
    """Counts of what a subscriber did; read them for dashboards and tests."""

    GAUGES: ClassVar[frozenset[str]] = frozenset({"in_flight", "concurrency_limit"})

    handled: int = 0
    duplicates: int = 0  # skipped by an idempotency middleware
    skipped: int = 0  # replays addressed to another group
    retried: int = 0
    dead_lettered: int = 0  # poison messages, and those out of attempts
    in_flight: int = 0
    concurrency_limit: int = 0  # handlers allowed at once now (moves with adaptive=)


_FIELD: dict[Outcome, str] = {
    "handled": "handled",
    "duplicate": "duplicates",
    "skipped": "skipped",
    "retried": "retried",
    "dead_lettered": "dead_lettered",
    "rejected": "dead_lettered",
}


def counting(stats: Stats) -> Middleware:
    async def middleware(ctx: Context, call_next: CallNext) -> None:
        stats.in_flight += 1
        try:
            await call_next(ctx)
        finally:
            stats.in_flight -= 1
            if ctx.outcome is not None:
                field = _FIELD[ctx.outcome]
                setattr(stats, field, getattr(stats, field) + 1)

    return middleware
