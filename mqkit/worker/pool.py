"""A worker pool: one subscription read by `size` long-lived tasks, each taking its next
delivery once `admit()` lets it in and handling it itself. The consumer reads this way
rather than as a feed (mqkit.worker.feed) with a task per delivery: a worker that finds a
delivery already fetched goes on without a trip through the event loop, where a new task,
a woken reader and a woken semaphore cost three per message. Admission still comes before
the next delivery is taken, so waiting there holds back the fetch.

A worker is a task that outlives its messages: a context variable a handler sets and does
not reset is still set for the next message that worker handles (mqkit's own are reset).

Stopping cancels the workers that wait for a delivery or their admission, gives those
handling one their deadline (or all the time they need), and cancels the rest unsettled,
so the broker redelivers them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger("mqkit")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Source(Protocol[T_co]):
    """What a pool reads: a Subscription (of deliveries), or batches of one (worker.batch)."""

    def __anext__(self) -> Awaitable[T_co]: ...

    async def close(self) -> None: ...


class Pool(Generic[T]):
    def __init__(
        self,
        subscription: Source[T],
        handle: Callable[[T], Coroutine[Any, Any, None]],
        admit: Callable[[], Awaitable[object]],
        *,
        size: int,
        name: str,
        take_turns: bool = False,
    ) -> None:
        """`handle` owns what `admit` took (it gives it back when done, failing or not).

        `take_turns`: one worker at a time is admitted and takes the next delivery, so a
        rate limit's turn is taken ahead by one idle worker at most, not by all of them.
        Only a gate with a rate limit needs it: the handoff costs a trip through the event
        loop per message (a third to three quarters of the rate at concurrency 16), where
        without it a worker whose handler never waits goes on to the next delivery at once."""
        self.subscription = subscription
        self._handle = handle
        self._admit = admit
        self._busy: set[asyncio.Task[None]] = set()  # workers handling a delivery now
        self._stopping = False
        self._ended = False
        self._taking: asyncio.Lock | None = asyncio.Lock() if take_turns else None
        self._workers = [asyncio.create_task(self._work(), name=f"{name}-{i}") for i in range(size)]

    async def _work(self) -> None:
        worker = asyncio.current_task()
        assert worker is not None
        while not self._stopping:
            try:
                delivery = await self._take()
            except StopAsyncIteration:
                self._ended = True
                return
            except asyncio.CancelledError:
                raise  # stopping
            except BaseException:
                self._ended = True  # the subscription (or a shared limiter) failed
                raise
            self._busy.add(worker)
            try:
                await self._handle(delivery)
            except Exception:
                log.exception("mqkit: handling a delivery failed")
            finally:
                self._busy.discard(worker)

    async def _take(self) -> T:
        if self._taking is None:
            await self._admit()
            return await anext(self.subscription)
        async with self._taking:
            await self._admit()
            return await anext(self.subscription)

    @property
    def reading(self) -> bool:
        """Still taking deliveries: the subscription has not ended, nor a worker failed."""
        return not self._ended and not self._stopping

    async def _cancel_idle(self) -> None:
        """Cancel the workers not handling a delivery until they end. They wait in
        client-library code (a subscription's fetch, a shared limiter's Redis call), and a
        cancellation swallowed there would leave stop() waiting forever."""
        idle = {w for w in self._workers if w not in self._busy and not w.done()}
        while idle:
            for worker in idle:
                worker.cancel()
            _, idle = await asyncio.wait(idle, timeout=1.0)
            for worker in idle:
                log.warning("mqkit: %s ignored a cancellation; cancelling again", worker)

    async def stop(self, deadline_s: float | None = None) -> None:
        """Stop taking deliveries; wait for those being handled (at most `deadline_s`
        seconds), cancel the rest; close the subscription."""
        self._stopping = True
        await self._cancel_idle()
        busy = {w for w in self._workers if not w.done()}
        if busy:
            timeout = None if deadline_s is None else max(0.0, deadline_s)
            await asyncio.wait(busy, timeout=timeout)
        for worker in self._workers:
            worker.cancel()  # unfinished: not acked, so redelivered
        await asyncio.wait(self._workers)
        for worker in self._workers:
            if not worker.cancelled() and worker.exception() is not None:
                log.error("mqkit: reading a subscription failed", exc_info=worker.exception())
        await self.subscription.close()


def subscriber_problem(pool: Pool[Any] | None, name: str) -> str | None:
    """Why the subscriber `name` reading through `pool` takes no messages now, or None while
    it does: what a consumer tells the App's readiness."""
    if pool is None:
        return f"the subscriber {name} has not started"
    if not pool.reading:
        return f"the subscription of {name} has ended"
    return None
