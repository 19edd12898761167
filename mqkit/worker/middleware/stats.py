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


def counting(stats: Stats) -> Middleware:
    async def middleware(ctx: Context, call_next: CallNext) -> None:
        stats.in_flight += 1
        try:
            await call_next(ctx)
        finally:
            stats.in_flight -= 1
            count(stats, ctx.outcome)

    return middleware


def count(stats: Stats, outcome: Outcome | None) -> None:
    """Count one message's outcome (batch subscribers count each message of a batch so)."""
    # Spelled out rather than looked up: this runs once per message.
    if outcome == "handled":
        stats.handled += 1
    elif outcome in ("dead_lettered", "rejected"):
        stats.dead_lettered += 1
    elif outcome == "retried":
        stats.retried += 1
    elif outcome == "duplicate":
        stats.duplicates += 1
    elif outcome == "skipped":
        stats.skipped += 1
