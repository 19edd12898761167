"""A feed: one subscription's deliveries, each handled as a task of its own once `admit()`
lets it in. Admission comes before the next delivery is taken, so waiting there (for a
handler slot, a rate limit, an in-flight budget) holds back the fetch and leaves the backlog
in the broker. The webhook dispatcher reads this way (its budget is shared by several
feeds); the worker's consumer reads through a pool of workers instead (pool.py).

Stopping cancels the fetch, gives the tasks in flight their deadline (or all the time they
need), and cancels the rest unsettled, so the broker redelivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mqkit.broker import Delivery, Subscription

log = logging.getLogger("mqkit")


class Feed:
    def __init__(
        self,
        subscription: Subscription,
        handle: Callable[[Delivery], Coroutine[Any, Any, None]],
        admit: Callable[[], Awaitable[object]],
        *,
        name: str,
    ) -> None:
        """`handle` owns what `admit` took (it gives it back when done, failing or not)."""
        self.subscription = subscription
        self._handle = handle
        self._admit = admit
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read(), name=name)

    async def _read(self) -> None:
        async for delivery in self.subscription:
            await self._admit()
            task = asyncio.create_task(self._handle(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    @property
    def reading(self) -> bool:
        """Still taking deliveries: the subscription has not ended, nor its reader failed."""
        return not self._reader.done()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("mqkit: handling a delivery failed", exc_info=task.exception())

    async def _stop_reading(self) -> None:
        """Cancel the reader until it ends. The reader runs client-library code (the
        subscription's fetch, a shared limiter's Redis call) and a cancellation it swallows
        would leave stop() waiting forever: one CI run hung on exactly that."""
        while not self._reader.done():
            self._reader.cancel()
            done, _ = await asyncio.wait({self._reader}, timeout=1.0)
            if not done:
                log.warning("mqkit: %s ignored a cancellation; cancelling again", self._reader)
        with contextlib.suppress(asyncio.CancelledError):
            self._reader.result()

    async def stop(self, deadline_s: float | None = None) -> None:
        """Stop fetching; wait for the tasks in flight (at most `deadline_s` seconds), cancel
        the rest; close the subscription."""
        await self._stop_reading()
        if self._tasks:
            timeout = None if deadline_s is None else max(0.0, deadline_s)
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()  # unfinished: not acked, so redelivered
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.subscription.close()
