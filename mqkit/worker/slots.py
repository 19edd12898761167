"""Handler slots: how many of a subscriber's messages are handled at once. Taking a slot
comes before taking the next delivery, so a busy subscriber holds back the fetch."""

from __future__ import annotations

import asyncio

from mqkit.adaptive import AdaptiveConcurrency, AimdLimit


class Slots:
    """`concurrency` fixed slots, or an AIMD limit moving between 1 and it (`adaptive`)."""

    def __init__(self, concurrency: int, adaptive: AdaptiveConcurrency | None) -> None:
        self._aimd = AimdLimit(adaptive, concurrency) if adaptive else None
        self._fixed = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency

    @property
    def limit(self) -> int:
        """Handlers allowed at once now."""
        return self._aimd.limit if self._aimd else self._concurrency

    async def acquire(self) -> None:
        if self._aimd:
            await self._aimd.acquire()
        else:
            await self._fixed.acquire()

    async def release(self, *, ok: bool, latency: float) -> None:
        """Give the slot back; `ok` and `latency` (the handler's) move an adaptive limit."""
        if self._aimd:
            await self._aimd.release(ok=ok, latency=latency)
        else:
            self._fixed.release()
