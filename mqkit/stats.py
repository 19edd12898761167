"""Stats in one shape. Every long-running part — a subscriber, the outbox relay, the half
checker, the webhook dispatcher — counts what it did in a dataclass of integers derived from
`Counters`, and `snapshot()` reads them as `{name: value}` for a dashboard, a test or a
metrics exporter, which needs to know no class:

    app.stats()  # {"subscriber orders/billing": {"handled": 10, ...}, "service OutboxRelay": ...}

A field is a counter (it only grows) unless the class names it in GAUGES (a level now, such
as messages in flight); a list field counts its items.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import fields
from typing import Any, ClassVar, Protocol, runtime_checkable


class Counters:
    """Base of the stats dataclasses."""

    GAUGES: ClassVar[frozenset[str]] = frozenset()

    def snapshot(self) -> dict[str, int]:
        values: dict[str, int] = {}
        for f in fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            value: Any = getattr(self, f.name)
            values[f.name] = len(value) if isinstance(value, Sized) else int(value)
        return values


@runtime_checkable
class HasStats(Protocol):
    """What a service shows to `App.stats()`: a `stats` attribute of a Counters kind."""

    stats: Counters
