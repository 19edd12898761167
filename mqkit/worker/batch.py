"""A batch subscriber's consumer: `@app.subscriber("orders", batch=500, batch_timeout=0.05)`
on `async def handle(orders: list[Order])`.

A batch is what the subscription holds, up to `batch` messages, waiting at most
`batch_timeout` seconds after the first for the rest. `concurrency` batches are handled at
once (mqkit.worker.pool), collected one at a time so that each fills. Then, of a batch:

- a DLQ replay addressed to another group is acked unseen, as one message would be;
- a body that does not decode is dead-lettered alone, and the others go on;
- the handler returns: all are acked together (mqkit.broker.ack_all: one request where
  the backend allows it);
- it raises BatchFailed(failed=[...]): the others are acked, each failed one settled as if
  handling it alone had raised the cause;
- it raises anything else: each is settled as if it had raised that, by the retry policy
  and its own attempt count (mqkit.worker.middleware.retry), so a batch that keeps failing
  is retried and dead-lettered message by message.

Stats, metrics and the retry policy count messages, not batches; the trace has one
`process` span per call of the handler, linked to every message's context. Middlewares,
which take one message at a time, do not run here (see App.running).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from mqkit import logs
from mqkit.broker import Broker, Delivery, Subscription, ack_all
from mqkit.errors import DecodeError
from mqkit.handlers import compile_batch_handler
from mqkit.middleware import Context
from mqkit.retry import BatchFailed, RetryPolicy
from mqkit.telemetry import metering, tracing
from mqkit.wire import REPLAY_GROUP
from mqkit.worker.middleware.retry import settle_failed
from mqkit.worker.middleware.stats import count
from mqkit.worker.pool import Pool
from mqkit.worker.subscriber import SubscriberSpec

log = logging.getLogger("mqkit")


class Batches:
    """A subscription read as batches: each the first delivery to come and what follows it
    within `timeout` seconds, up to `size`. Cancelling a read midway loses nothing: what it
    took is unsettled, so the subscription hands it back when it closes."""

    def __init__(self, subscription: Subscription, size: int, timeout: float) -> None:
        self.subscription = subscription
        self.size = size
        self.timeout = timeout

    async def __anext__(self) -> list[Delivery]:
        batch = [await anext(self.subscription)]
        # One timer for the whole batch: a full buffer hands out the rest without waiting.
        try:
            async with asyncio.timeout(self.timeout):
                while len(batch) < self.size:
                    batch.append(await anext(self.subscription))
        except (TimeoutError, StopAsyncIteration):
            pass  # a subscription that ended says so at the next read
        return batch

    async def close(self) -> None:
        await self.subscription.close()


async def _no_admission() -> None:
    """Batch subscribers take no rate limit or adaptive slots (see subscriber.declare)."""


class BatchConsumer:
    def __init__(self, spec: SubscriberSpec, *, policy: RetryPolicy) -> None:
        assert spec.batch is not None, "a batch subscriber's spec"
        self.spec = spec
        self._policy = policy
        self._handler = compile_batch_handler(spec.handler)
        self._pool: Pool[list[Delivery]] | None = None
        self._system = "mqkit"
        self._record: Callable[[Context, float], None] | None = None

    async def start(self, broker: Broker) -> None:
        spec = self.spec
        assert spec.batch is not None
        self._system = broker.SYSTEM
        meters = metering.instruments()
        if meters is not None:
            from mqkit.worker.middleware.metrics import recorder  # imports OpenTelemetry

            self._record = recorder(meters, broker.SYSTEM, spec.group)[1]
        subscription = await broker.subscribe(spec.topic, group=spec.group, prefetch=spec.prefetch)
        self._pool = Pool(
            Batches(subscription, spec.batch, spec.batch_timeout),
            self._handle,
            _no_admission,
            size=spec.concurrency,
            name=f"mqkit-{spec.group}",
            take_turns=True,  # one worker collects at a time, so its batch fills
        )

    async def _handle(self, deliveries: list[Delivery]) -> None:
        stats = self.spec.stats
        group = self.spec.group
        contexts = [
            Context(message=d.message, topic=d.message.topic, group=group, delivery=d)
            for d in deliveries
        ]
        stats.in_flight += len(contexts)
        started = time.perf_counter()
        try:
            await self._settle(contexts)
        finally:
            stats.in_flight -= len(contexts)
            took = time.perf_counter() - started
            for ctx in contexts:
                count(stats, ctx.outcome)
                if self._record is not None:
                    self._record(ctx, took)

    async def _settle(self, contexts: list[Context]) -> None:
        skipped: list[Context] = []
        handled: list[Context] = []
        items: list[Any] = []
        for ctx in contexts:
            if ctx.message.headers.get(REPLAY_GROUP, ctx.group) != ctx.group:
                ctx.outcome = "skipped"
                skipped.append(ctx)
                continue
            try:
                items.append(self._handler.decode(ctx.message))
            except DecodeError as exc:
                await self._fail(ctx, exc)
                continue
            handled.append(ctx)
        failed: dict[int, Exception] = {}
        if handled:
            try:
                with self._span(handled):
                    await self._handler.call(items, [c.message for c in handled])
            except BatchFailed as failure:
                failed = _failed_ones(failure, items, handled)
            except Exception as exc:
                failed = dict.fromkeys(range(len(handled)), exc)
        for i, reason in failed.items():
            await self._fail(handled[i], reason)
        done = [*skipped, *(ctx for i, ctx in enumerate(handled) if i not in failed)]
        await ack_all([_delivery(ctx) for ctx in done])
        for ctx in done:
            ctx.outcome = ctx.outcome or "handled"

    async def _fail(self, ctx: Context, exc: Exception) -> None:
        with logs.handling(ctx.message, ctx.group):
            await settle_failed(ctx, _delivery(ctx), self._policy, exc)

    def _span(self, handled: list[Context]) -> AbstractContextManager[object]:
        tracer = tracing.tracer()
        if tracer is None:
            return nullcontext()
        from mqkit.telemetry import spans  # imports OpenTelemetry's trace API

        messages = [c.message for c in handled]
        return spans.processing_batch(tracer, self._system, messages, self.spec.group)

    def problem(self) -> str | None:
        """Why this subscriber takes no messages now, or None while it does."""
        if self._pool is None:
            return f"the subscriber {self.spec.name} has not started"
        if not self._pool.reading:
            return f"the subscription of {self.spec.name} has ended"
        return None

    async def stop(self, deadline_s: float) -> None:
        """Stop fetching, let the batches being handled finish within `deadline_s`, hand
        back the rest."""
        if self._pool is not None:
            await self._pool.stop(deadline_s)


def _failed_ones(
    failure: BatchFailed, items: list[Any], handled: list[Context]
) -> dict[int, Exception]:
    """The batch's positions that `failure` names, each with what to settle it for. A
    name that is not in the batch fails all of it, for the failure itself: better a retry
    than an ack of what the handler said had failed."""
    positions: dict[int, list[int]] = {}
    for i, (item, ctx) in enumerate(zip(items, handled, strict=True)):
        positions.setdefault(id(item), []).append(i)
        if ctx.message is not item:
            positions.setdefault(id(ctx.message), []).append(i)
    reason = failure.reason_for_each()
    failed: dict[int, Exception] = {}
    for name in failure.failed:
        free = [i for i in positions.get(id(name), []) if i not in failed]
        if not free:
            log.error(
                "mqkit: BatchFailed names %r, which is not in the batch; retrying all of it",
                name,
            )
            return dict.fromkeys(range(len(handled)), failure)
        failed[free[0]] = reason
    return failed


def _delivery(ctx: Context) -> Delivery:
    assert ctx.delivery is not None, "a worker's context"
    return ctx.delivery
