"""A subscriber's consumer: `concurrency` workers (mqkit.worker.pool) taking its deliveries
through its middleware chain.

Before a worker takes a delivery, it takes a handler slot and passes the fetch gate (an
un-keyed rate limit); waiting for either leaves the backlog in the broker. Each delivery
then runs through the chain (see mqkit.worker.middleware for the order), whose retry
policy settles it. Stopping gives in-flight handlers their deadline and hands back the
rest, so the broker redelivers them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mqkit import logs
from mqkit.broker import Broker, Delivery
from mqkit.handlers import compile_handler
from mqkit.middleware import CallNext, Context, Middleware, chain
from mqkit.retry import RetryPolicy
from mqkit.telemetry import metering, tracing
from mqkit.worker.fetch_gate import Limits, SharedLimits, fetch_gate
from mqkit.worker.middleware import counting, keyed_limit, replay_filter, retry_and_dead_letter
from mqkit.worker.pool import Pool, subscriber_problem
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
        self._pool: Pool[Delivery] | None = None

    def _chain(self, limits: Limits, system: str) -> CallNext:
        spec = self.spec
        policies: list[Middleware] = []  # outermost first
        tracer = tracing.tracer()
        if tracer is not None:
            from mqkit.worker.middleware.tracing import tracing_spans  # imports OpenTelemetry

            policies.append(tracing_spans(tracer, system))
        meters = metering.instruments()
        if meters is not None:
            from mqkit.worker.middleware.metrics import measuring  # imports OpenTelemetry

            policies.append(measuring(meters, system, spec.group))
        policies += [counting(spec.stats), retry_and_dead_letter(self._policy), replay_filter()]
        if limits.limiter is not None and spec.rate_by is not None:
            policies.append(keyed_limit(limits.limiter, spec.rate_by, self._waited(system)))
        middlewares = [*policies, *self._app_middleware, *spec.middleware]
        return chain(middlewares, compile_handler(spec.handler))

    def _waited(self, system: str) -> Callable[[float], None] | None:
        """Where the seconds a delivery waited for its rate limit go: the metric, if any."""
        meters = metering.instruments()
        if meters is None:
            return None
        attributes: dict[str, str | int] = {
            "messaging.system": system,
            "messaging.destination.name": self.spec.topic,
            "messaging.consumer.group.name": self.spec.group,
        }
        return lambda seconds: meters.limiter_wait.record(seconds, attributes)

    async def start(self, broker: Broker) -> None:
        self._limits = Limits(self.spec.limit, self._shared_limits)
        self._call = self._chain(self._limits, broker.SYSTEM)
        subscription = await broker.subscribe(
            self.spec.topic,
            group=self.spec.group,
            prefetch=self.spec.prefetch,
            exactly_once=self.spec.exactly_once,
        )
        un_keyed = self._limits.limiter if self.spec.rate_by is None else None
        admit = fetch_gate(self._slots.acquire, un_keyed, self._waited(broker.SYSTEM))
        self._pool = Pool(
            subscription,
            self._handle,
            admit,
            size=self.spec.concurrency,
            name=f"mqkit-{self.spec.group}",
            take_turns=un_keyed is not None,
        )

    async def _handle(self, delivery: Delivery) -> None:
        assert self._call is not None
        message = delivery.message
        ctx = Context(
            message=message, topic=message.topic, group=self.spec.group, delivery=delivery
        )
        about = logs.start_handling(message, self.spec.group)
        try:
            await self._call(ctx)
        finally:
            logs.end_handling(about)
            if self._slots.adaptive:
                ok = ctx.outcome not in _FAILURES  # did the downstream cope?
                latency = time.monotonic() - ctx.started
                await self._slots.release_measured(ok=ok, latency=latency)
                self.spec.stats.concurrency_limit = self._slots.limit
            else:
                self._slots.release()

    def problem(self) -> str | None:
        """Why this subscriber takes no messages now, or None while it does."""
        return subscriber_problem(self._pool, self.spec.name)

    async def stop(self, deadline_s: float) -> None:
        """Stop fetching, let in-flight handlers finish within `deadline_s`, hand back the rest."""
        try:
            if self._pool is not None:
                await self._pool.stop(deadline_s)
        finally:
            if self._limits is not None:
                await self._limits.close()
