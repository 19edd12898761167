"""The fetch gate: a subscriber's un-keyed rate limit (`rate="200/s"`), waited for before
the consumer takes the next delivery. Waiting there is what holds back the fetch: the
subscription's small prefetch fills, and the rest of the backlog stays in the broker, where
nothing is nacked, retried or dropped for it. Also where a subscriber's limiter is made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mqkit.ratelimit import Limiter, LocalLimiter, Rate, acquire
from mqkit.ratelimit.limiter import Outage
from mqkit.registry import LIMITERS, plugin


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A subscriber's limit: local to the process, or shared through Redis under `key`."""

    rate: Rate
    burst: int
    key: str | None = None


@dataclass(frozen=True, slots=True)
class SharedLimits:
    """Where the limits shared by key live (the App's limits_url) and what an outage does."""

    url: str | None
    outage: Outage = "pause"
    workers: int = 1


class Limits:
    """A subscriber's limiter for one run: made in the running loop (a Redis client belongs
    to the loop that uses it) and closed with the run if made here."""

    def __init__(self, limit: RateLimit | Limiter | None, shared: SharedLimits) -> None:
        self.limiter: Limiter | None
        self._owned = isinstance(limit, RateLimit)
        if not isinstance(limit, RateLimit):
            self.limiter = limit
        elif limit.key is None:
            self.limiter = LocalLimiter(limit.rate, limit.burst)
        else:
            limiter_class = plugin(LIMITERS, shared.url or "", "shared limiter")
            self.limiter = limiter_class(
                shared.url,
                rate=limit.rate,
                burst=limit.burst,
                name=limit.key,
                on_outage=shared.outage,
                workers=shared.workers,
            )

    async def close(self) -> None:
        if self.limiter is not None and self._owned:
            await self.limiter.close()


def fetch_gate(
    take_slot: Callable[[], Awaitable[object]],
    limiter: Limiter | None,
    waited: Callable[[float], None] | None = None,
) -> Callable[[], Awaitable[object]]:
    """What the consumer waits for before the next delivery: a handler slot, then (with an
    un-keyed limit) the limit's next turn; `waited` is told the seconds that took."""
    if limiter is None:
        return take_slot
    gated = limiter

    async def admit() -> None:
        await take_slot()
        seconds = await acquire(gated)
        if waited is not None:
            waited(seconds)

    return admit
