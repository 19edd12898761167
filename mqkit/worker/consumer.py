"""The consume loop: feeds one subscriber's deliveries through its middleware chain,
`concurrency` at a time.

Before it takes a delivery the loop takes a handler slot and passes the fetch gate (an
un-keyed rate limit); waiting for either leaves the backlog in the broker. Each delivery
then runs as its own task through the chain (see mqkit.worker.middleware for the order),
whose retry policy settles it. Stopping cancels the fetch, gives in-flight handlers their
deadline and cancels the rest unsettled, so the broker redelivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from mqkit.broker import Broker, Delivery, Subscription
from mqkit.handlers import compile_handler
from mqkit.middleware import CallNext, Context, Middleware, chain
from mqkit.retry import RetryPolicy
from mqkit.worker.fetch_gate import FetchGate, Limits, SharedLimits
from mqkit.worker.middleware import counting, keyed_limit, replay_filter, retry_and_dead_letter
from mqkit.worker.slots import Slots
from mqkit.worker.subscriber import SubscriberSpec

_FAILURES = ("retried", "dead_lettered")  # what tells adaptive concurrency to back off


class Consumer:
    def __init__(
        self,
        spec: SubscriberSpec,
        *,
        policy: RetryPolicy,
        app_middleware: list[Middleware],
        shared_limits: SharedLimits,
    ) -> None:
        self.spec = spec
        self._policy = policy
        self._app_middleware = app_middleware
        self._shared_limits = shared_limits
        self._slots = Slots(spec.concurrency, spec.adaptive)
        spec.stats.concurrency_limit = self._slots.limit
        self._call: CallNext | None = None
        self._limits: Limits | None = None
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None

    def _chain(self, limits: Limits) -> CallNext:
        spec = self.spec
        policies: list[Middleware] = [
            counting(spec.stats),
            retry_and_dead_letter(self._policy),
            replay_filter(),
        ]
        if limits.limiter is not None and spec.rate_by is not None:
            policies.append(keyed_limit(limits.limiter, spec.rate_by))
        middlewares = [*policies, *self._app_middleware, *spec.middleware]
        return chain(middlewares, compile_handler(spec.handler))

    async def start(self, broker: Broker) -> None:
        self._limits = Limits(self.spec.limit, self._shared_limits)
        self._call = self._chain(self._limits)
        gate = FetchGate(self._limits.limiter if self.spec.rate_by is None else None)
        self._subscription = await broker.subscribe(
            self.spec.topic, group=self.spec.group, prefetch=self.spec.prefetch
        )
        self._reader = asyncio.create_task(self._read(gate), name=f"mqkit-{self.spec.group}")

    async def _read(self, gate: FetchGate) -> None:
        assert self._subscription is not None
        async for delivery in self._subscription:
            await self._slots.acquire()
            await gate.wait()
            task = asyncio.create_task(self._handle(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, delivery: Delivery) -> None:
        assert self._call is not None
        message = delivery.message
        ctx = Context(
            message=message, topic=message.topic, group=self.spec.group, delivery=delivery
        )
        try:
            await self._call(ctx)
        finally:
            ok = ctx.outcome not in _FAILURES  # did the downstream cope?
            await self._slots.release(ok=ok, latency=time.monotonic() - ctx.started)
            self.spec.stats.concurrency_limit = self._slots.limit

    async def stop(self, deadline_s: float) -> None:
        """Stop fetching, let in-flight handlers finish within `deadline_s`, hand back the rest."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        deadline = time.monotonic() + deadline_s
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        for task in list(self._tasks):
            task.cancel()  # unfinished: not acked, so redelivered
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._subscription is not None:
            await self._subscription.close()
        if self._limits is not None:
            await self._limits.close()
