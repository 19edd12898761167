"""Adaptive concurrency: AIMD (additive increase, multiplicative decrease) on handler
latency and errors, the way TCP finds a link's capacity.

    @app.subscriber("orders", concurrency=64, adaptive=AdaptiveConcurrency(latency_target=0.2))

The subscriber starts at `initial` handlers at once (default: half its concurrency). After
each round of that many handled messages without trouble it allows one more, up to its
concurrency; a handler that fails (other than a poison message) or takes longer than
`latency_target` cuts the limit by `decrease`, at most once a round, down to `minimum`. A
downstream that slows under load so finds the subscriber backing off, and a recovered one
finds it climbing back. Off unless given.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AdaptiveConcurrency:
    latency_target: float | None = None
    minimum: int = 1
    initial: int | None = None
    decrease: float = 0.5

    def __post_init__(self) -> None:
        if self.minimum < 1:
            raise ValueError("minimum must be >= 1")
        if not 0 < self.decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        if self.latency_target is not None and self.latency_target <= 0:
            raise ValueError("latency_target must be positive")


class AimdLimit:
    """How many handlers may run now; `acquire` before one, `release` with how it went."""

    def __init__(self, settings: AdaptiveConcurrency, maximum: int) -> None:
        self.settings = settings
        self.maximum = maximum
        self.minimum = min(settings.minimum, maximum)
        start = settings.initial if settings.initial is not None else maximum // 2
        self.limit = max(self.minimum, min(maximum, start))
        self.in_flight = 0
        self._good = 0  # trouble-free completions since the limit last changed
        self._since_cut = math.inf  # completions since the last decrease
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def release(self, *, ok: bool, latency: float) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._since_cut += 1
            target = self.settings.latency_target
            trouble = not ok or (target is not None and latency > target)
            if trouble:
                # One cut a round: the handlers already running when the first trouble
                # showed were started under the old limit and say nothing new.
                if self._since_cut >= self.limit:
                    self.limit = max(self.minimum, math.floor(self.limit * self.settings.decrease))
                    self._since_cut = 0
                    self._good = 0
            else:
                self._good += 1
                if self._good >= self.limit and self.limit < self.maximum:
                    self.limit += 1
                    self._good = 0
            self._changed.notify_all()
