"""GCRA in this process: one float per key."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from mqkit.ratelimit.limiter import Permit, Rate, check_burst

# Keys whose slots are all in the past are forgotten once this many are held.
_PRUNE_AT = 10_000


class LocalLimiter:
    """`LocalLimiter(Rate.parse("100/s"), burst=10)`; keys are independent limits."""

    def __init__(
        self,
        rate: Rate | str | float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = Rate.parse(rate)
        self.burst = check_burst(burst)
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def reserve(self, key: str = "", *, max_wait: float = math.inf, cost: int = 1) -> Permit:
        return self.reserve_now(key, max_wait=max_wait, cost=cost)

    def reserve_now(self, key: str = "", *, max_wait: float = math.inf, cost: int = 1) -> Permit:
        """`reserve` without the event loop, for callers that are not coroutines."""
        now = self._clock()
        interval = self.rate.interval
        tat = max(self._tat.get(key, now), now)
        # The last of `cost` slots must fall within the tolerance.
        wait = max(0.0, tat + (cost - 1 - (self.burst - 1)) * interval - now)
        if wait > max_wait:
            return Permit(False, wait)
        if len(self._tat) >= _PRUNE_AT:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._tat[key] = tat + cost * interval
        return Permit(True, wait)

    async def close(self) -> None:
        """Nothing held."""
