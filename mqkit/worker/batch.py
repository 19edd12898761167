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
from mqkit.worker.pool import Pool, subscriber_problem
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
        stats.in_flight += len(deliveries)
        started = time.perf_counter()
        # What became of each: the handled ones as deliveries (most of them, and nothing to
        # say of one but that), the others as the contexts their settling left.
        handled: list[Delivery] = []
        others: list[Context] = []
        try:
            await self._settle(deliveries, handled, others)
        finally:
            stats.in_flight -= len(deliveries)
            stats.handled += len(handled)
            for ctx in others:
                count(stats, ctx.outcome)
            if self._record is not None:
                took = time.perf_counter() - started
                for ctx in [*map(self._context, handled), *others]:
                    ctx.outcome = ctx.outcome or "handled"
                    self._record(ctx, took)

    async def _settle(
        self, deliveries: list[Delivery], handled: list[Delivery], others: list[Context]
    ) -> None:
        group = self.spec.group
        taken: list[Delivery] = []  # those the handler gets
        items: list[Any] = []
        skipped: list[Delivery] = []
        for delivery in deliveries:
            message = delivery.message
            if message.headers.get(REPLAY_GROUP, group) != group:
                skipped.append(delivery)
                continue
            try:
                items.append(self._handler.decode(message))
            except DecodeError as exc:
                others.append(await self._fail(delivery, exc))
                continue
            taken.append(delivery)
        failed: dict[int, Exception] = {}
        if taken:
            try:
                with self._span(taken):
                    await self._handler.call(items, [d.message for d in taken])
            except BatchFailed as failure:
                failed = _failed_ones(failure, items, taken)
            except Exception as exc:
                failed = dict.fromkeys(range(len(taken)), exc)
        for i, reason in failed.items():
            others.append(await self._fail(taken[i], reason))
        done = [d for i, d in enumerate(taken) if i not in failed] if failed else taken
        await ack_all([*skipped, *done])
        handled += done
        for delivery in skipped:
            ctx = self._context(delivery)
            ctx.outcome = "skipped"
            others.append(ctx)

    def _context(self, delivery: Delivery) -> Context:
        message = delivery.message
        return Context(
            message=message, topic=message.topic, group=self.spec.group, delivery=delivery
        )

    async def _fail(self, delivery: Delivery, exc: Exception) -> Context:
        """Settle one message as the policy says for `exc`; the context that tells how."""
        ctx = self._context(delivery)
        with logs.handling(ctx.message, ctx.group):
            await settle_failed(ctx, delivery, self._policy, exc)
        return ctx

    def _span(self, taken: list[Delivery]) -> AbstractContextManager[object]:
        tracer = tracing.tracer()
        if tracer is None:
            return nullcontext()
        from mqkit.telemetry import spans  # imports OpenTelemetry's trace API

        messages = [d.message for d in taken]
        return spans.processing_batch(tracer, self._system, messages, self.spec.group)

    def problem(self) -> str | None:
        """Why this subscriber takes no messages now, or None while it does."""
        return subscriber_problem(self._pool, self.spec.name)

    async def stop(self, deadline_s: float) -> None:
        """Stop fetching, let the batches being handled finish within `deadline_s`, hand
        back the rest."""
        if self._pool is not None:
            await self._pool.stop(deadline_s)


def _failed_ones(
    failure: BatchFailed, items: list[Any], taken: list[Delivery]
) -> dict[int, Exception]:
    """The batch's positions that `failure` names, each with what to settle it for. A
    name that is not in the batch fails all of it, for the failure itself: better a retry
    than an ack of what the handler said had failed."""
    positions: dict[int, list[int]] = {}
    for i, (item, delivery) in enumerate(zip(items, taken, strict=True)):
        positions.setdefault(id(item), []).append(i)
        if delivery.message is not item:
            positions.setdefault(id(delivery.message), []).append(i)
    reason = failure.reason_for_each()
    failed: dict[int, Exception] = {}
    for name in failure.failed:
        free = [i for i in positions.get(id(name), []) if i not in failed]
        if not free:
            log.error(
                "mqkit: BatchFailed names %r, which is not in the batch; retrying all of it",
                name,
            )
            return dict.fromkeys(range(len(taken)), failure)
        failed[free[0]] = reason
    return failed
