"""A lane per endpoint: how many attempts may run at once, how fast, and how healthy it is.

Lanes are what keep one slow or dead endpoint from delaying the others. An attempt waits
only for its own endpoint's lane; when that lane is full, throttled (Retry-After) or over its
rate, the delivery is not held in memory but handed back to the broker as a delayed retry,
so the dispatcher's shared in-flight budget goes to the endpoints that answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mqkit.ratelimit import LocalLimiter
from mqkit.webhooks.endpoints import Endpoint

# Attempts that may wait for a lane's slots (as a multiple of its max concurrency) before
# the lane is judged: if its queue would take longer than MAX_QUEUE_WAIT to drain, further
# attempts are deferred to the broker instead of waiting in memory.
WAITING_FACTOR = 4
MAX_QUEUE_WAIT = 1.0
MAX_DEFER = 30.0
BUCKETS = 60  # the failure-rate window is kept in this many slices


@dataclass(frozen=True)
class Breaker:
    """Disable an endpoint whose failure rate over the last `window` seconds reached
    `failure_rate` with at least `min_attempts` attempts in that window."""

    window: float = 3600.0
    min_attempts: int = 1000
    failure_rate: float = 0.95


class Lane:
    def __init__(self, endpoint: Endpoint, breaker: Breaker) -> None:
        self.endpoint = endpoint
        self.breaker = breaker
        self._slots = asyncio.Semaphore(endpoint.max_concurrency)
        self._limiter = _limiter(endpoint)
        self.waiting = 0
        self.busy = 0
        self.latency = 0.0  # moving average of an attempt's duration, seconds
        self.last_done = time.monotonic()
        self.throttled_until = 0.0
        self.failing_since = endpoint.failing_since
        self._buckets: list[list[int]] = [[0, 0, 0] for _ in range(BUCKETS)]  # [slice, ok, failed]

    def refresh(self, endpoint: Endpoint) -> None:
        """Take a re-read endpoint; a change of limits builds the limiters anew."""
        if (endpoint.max_concurrency, endpoint.rate_limit) != (
            self.endpoint.max_concurrency,
            self.endpoint.rate_limit,
        ):
            self._slots = asyncio.Semaphore(endpoint.max_concurrency)
            self._limiter = _limiter(endpoint)
        # The registry is shared by every dispatcher: a success seen by another one (or an
        # operator's enable) ends the streak here too.
        self.failing_since = endpoint.failing_since
        self.endpoint = endpoint

    def defer_for(self, now: float) -> float | None:
        """None when an attempt may go ahead now; else how long to put it off."""
        if now < self.throttled_until:
            return self.throttled_until - now
        if self.waiting >= self.endpoint.max_concurrency * WAITING_FACTOR:
            drain = self.queue_drain_time()
            if drain > MAX_QUEUE_WAIT:
                return min(drain, MAX_DEFER)
        return None

    def queue_drain_time(self) -> float:
        """How long the attempts waiting now should take to get a slot. An endpoint that
        has not finished an attempt for a while (it hangs) counts as that slow."""
        per_attempt = self.latency
        if self.busy >= self.endpoint.max_concurrency:
            per_attempt = max(per_attempt, time.monotonic() - self.last_done)
        return self.waiting * per_attempt / self.endpoint.max_concurrency

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        started = time.monotonic()
        if self.busy == 0:  # a stall is counted from the last completion or from now
            self.last_done = started
        self.busy += 1
        try:
            if self._limiter is not None:
                pause = self._limiter.reserve_now().wait
                if pause:
                    await asyncio.sleep(pause)
            yield
        finally:
            self.busy -= 1
            self.last_done = time.monotonic()
            self.latency += 0.2 * (self.last_done - started - self.latency)
            self._slots.release()

    def throttle(self, seconds: float) -> None:
        self.throttled_until = max(self.throttled_until, time.time() + seconds)

    def count(self, ok: bool, now: float) -> None:
        slice_ = int(now * BUCKETS / self.breaker.window)
        bucket = self._buckets[slice_ % BUCKETS]
        if bucket[0] != slice_:
            bucket[:] = [slice_, 0, 0]
        bucket[1 if ok else 2] += 1

    def breaker_tripped(self, now: float) -> bool:
        oldest = int(now * BUCKETS / self.breaker.window) - BUCKETS + 1
        ok = failed = 0
        for slice_, good, bad in self._buckets:
            if slice_ >= oldest:
                ok, failed = ok + good, failed + bad
        total = ok + failed
        return total >= self.breaker.min_attempts and failed / total >= self.breaker.failure_rate


def _limiter(endpoint: Endpoint) -> LocalLimiter | None:
    """The endpoint's rate limit, with a second's worth of burst."""
    if not endpoint.rate_limit:
        return None
    return LocalLimiter(endpoint.rate_limit, burst=max(1, int(endpoint.rate_limit)))
