"""Handler slots: how many of a subscriber's messages are handled at once. Taking a slot
comes before taking the next delivery, so a busy subscriber holds back the fetch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mqkit.adaptive import AdaptiveConcurrency, AimdLimit


class Slots:
    """`concurrency` fixed slots, or an AIMD limit moving between 1 and it (`adaptive`)."""

    def __init__(self, concurrency: int, adaptive: AdaptiveConcurrency | None) -> None:
        self._aimd = AimdLimit(adaptive, concurrency) if adaptive else None
        self._fixed = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self.adaptive = self._aimd is not None
        # Bound once: taking and giving back a slot happen for every message.
        self.acquire: Callable[[], Awaitable[object]] = (
            self._aimd.acquire if self._aimd else self._fixed.acquire
        )
        self.release: Callable[[], None] = self._fixed.release  # a fixed slot

    @property
    def limit(self) -> int:
        """Handlers allowed at once now."""
        return self._aimd.limit if self._aimd else self._concurrency

    async def release_measured(self, *, ok: bool, latency: float) -> None:
        """Give an adaptive slot back; `ok` and `latency` (the handler's) move the limit."""
        assert self._aimd is not None
        await self._aimd.release(ok=ok, latency=latency)
