"""A gate to hold a call at, noting whether it got through or was cancelled while held:
what the tests of "stopping never cancels a statement midway" need."""

from __future__ import annotations

import asyncio


class Gate:
    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.outcome: list[str] = []  # "finished" or "cancelled", per call held
        self._open = asyncio.Event()

    async def hold(self) -> None:
        """Wait here until open(); a cancellation while waiting is noted and goes on."""
        self.reached.set()
        try:
            await self._open.wait()
        except asyncio.CancelledError:
            self.outcome.append("cancelled")
            raise
        self.outcome.append("finished")

    def open(self) -> None:
        self._open.set()
