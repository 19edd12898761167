"""The worker application: subscribers, middleware, lifecycle, graceful shutdown.

    app = mqkit.App()

    @app.subscriber("orders", group="billing", concurrency=8)
    async def bill(order: Order) -> None:
        ...

`mqkit run module:app` runs it. Returning acks the message; raising retries it per the
retry policy and, once attempts run out, dead-letters it; a body that does not decode into
the annotation is dead-lettered at once. On SIGINT/SIGTERM the worker stops fetching, gives
in-flight handlers `shutdown_timeout` seconds, and leaves everything unfinished for
redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mqkit.adaptive import AdaptiveConcurrency, AimdLimit
from mqkit.broker import Broker, Delivery, Subscription, validate_topic
from mqkit.errors import DecodeError
from mqkit.handlers import Handler, compile_handler, default_group
from mqkit.message import Message
from mqkit.middleware import CallNext, Context, Middleware, chain
from mqkit.ratelimit import Limiter, LocalLimiter, Rate, acquire
from mqkit.ratelimit.limiter import Outage
from mqkit.registry import LIMITERS, connect, plugin
from mqkit.retry import Reject, Retry, RetryPolicy
from mqkit.service import RunningServices, ServiceSpec
from mqkit.wire import REPLAY_GROUP

log = logging.getLogger("mqkit")

H = TypeVar("H", bound=Handler)
Hook = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Stats:
    """Counts of what a subscriber did; read them for dashboards and tests."""

    handled: int = 0
    duplicates: int = 0  # skipped by an idempotency middleware
    skipped: int = 0  # replays addressed to another group
    retried: int = 0
    dead_lettered: int = 0
    in_flight: int = 0
    concurrency_limit: int = 0  # handlers allowed at once now (moves with adaptive=)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A subscriber's limit: local to the process, or shared through Redis under `key`."""

    rate: Rate
    burst: int
    key: str | None = None


@dataclass(slots=True)
class SubscriberSpec:
    topic: str
    group: str
    handler: Handler
    concurrency: int
    prefetch: int
    retry: RetryPolicy | None
    middleware: Sequence[Middleware]
    limit: RateLimit | Limiter | None = None
    rate_by: Callable[[Message], str] | None = None
    adaptive: AdaptiveConcurrency | None = None
    stats: Stats = field(default_factory=Stats)


class App:
    def __init__(
        self,
        url: str | None = None,
        *,
        broker: Broker | None = None,
        retry: RetryPolicy | None = None,
        middleware: Sequence[Middleware] = (),
        shutdown_timeout: float = 30.0,
        limits_url: str | None = None,
        limits_outage: Outage = "pause",
        limits_workers: int = 1,
    ) -> None:
        """`limits_url` (Redis) holds the limits subscribers share by `rate_key`; while it is
        unreachable they pause (`limits_outage="pause"`) or each process keeps to
        rate / `limits_workers` on its own (`"local"`): see mqkit_redis.limiter."""
        self._url = url
        self.limits_url = limits_url
        self.limits_outage = limits_outage
        self.limits_workers = limits_workers
        self._broker = broker
        self.retry = retry or RetryPolicy()
        self.middleware: list[Middleware] = list(middleware)
        self.shutdown_timeout = shutdown_timeout
        self.subscribers: list[SubscriberSpec] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self.services: list[ServiceSpec] = []

    # -- declaring ---------------------------------------------------------------------------

    def subscriber(
        self,
        topic: str,
        *,
        group: str | None = None,
        concurrency: int = 1,
        prefetch: int | None = None,
        retry: RetryPolicy | None = None,
        middleware: Sequence[Middleware] = (),
        rate: str | float | None = None,
        burst: int = 1,
        rate_key: str | None = None,
        limiter: Limiter | None = None,
        rate_by: Callable[[Message], str] | None = None,
        adaptive: AdaptiveConcurrency | None = None,
    ) -> Callable[[H], H]:
        """Register an async handler for `topic` in consumer `group` (default: the handler's
        qualified name), running at most `concurrency` messages at once.

        `rate="200/s"` (with `burst`) paces the handler: over the limit the subscriber takes
        no further message, so the backlog stays in the broker; nothing is nacked, retried
        or dropped for it. `rate_key="billing"` makes it one limit for every process using
        that key (needs the App's `limits_url`); `limiter=` takes any Limiter instead.
        `rate_by=lambda m: m.key` makes it a limit per key (per tenant, per customer): then a
        message waits for its key's turn in a handler slot, so the other keys go on while
        `concurrency` slots are free, and the fetch is held back once all of them wait.
        `adaptive=AdaptiveConcurrency(...)` moves the handlers allowed at once between 1 and
        `concurrency` on their latency and errors (see mqkit.adaptive)."""
        validate_topic(topic)
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        limit: RateLimit | Limiter | None = limiter
        if rate is not None:
            if limiter is not None:
                raise ValueError("give rate= or limiter=, not both")
            if rate_key is not None and self.limits_url is None:
                raise ValueError("rate_key= shares a limit through Redis: give App(limits_url=)")
            limit = RateLimit(Rate.parse(rate), burst, rate_key)
        elif rate_key is not None:
            raise ValueError("rate_key= needs rate=")
        if rate_by is not None and limit is None:
            raise ValueError("rate_by= needs rate= or limiter=")
        if prefetch is None:
            prefetch = max(10, 2 * concurrency)
            if limit is not None and rate_by is None:  # waiting is in the broker, not here
                prefetch = max(1, min(prefetch, limit.burst))

        def register(handler: H) -> H:
            compile_handler(handler)  # fail at import time, not at the first message
            self.subscribers.append(
                SubscriberSpec(
                    topic=topic,
                    group=group or default_group(handler),
                    handler=handler,
                    concurrency=concurrency,
                    prefetch=prefetch,
                    retry=retry,
                    middleware=list(middleware),
                    limit=limit,
                    rate_by=rate_by,
                    adaptive=adaptive,
                )
            )
            return handler

        return register

    def add_service(self, service: ServiceSpec) -> None:
        """Run a service (or what makes one from the App's broker) with the App: started
        after the subscribers, stopped on the same signal within `shutdown_timeout`."""
        self.services.append(service)

    def add_middleware(self, middleware: Middleware) -> None:
        """Add an app-wide middleware; it runs inside those added before it."""
        self.middleware.append(middleware)

    def on_startup(self, hook: Hook) -> Hook:
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        self._shutdown.append(hook)
        return hook

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            raise RuntimeError("the app is not running yet: its broker is made by run()")
        return self._broker

    async def publish(self, topic: str, payload: Any = b"", **kwargs: Any) -> Message:
        """Publish through the app's broker (see Broker.publish)."""
        return await self.broker.publish(topic, payload, **kwargs)

    # -- running -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or forever), then shut down gracefully."""
        async with self.running():
            await (stop or asyncio.Event()).wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[App]:
        """Start the app for the duration of the block; for tests and embedding."""
        owns_broker = self._broker is None
        if self._broker is None:
            self._broker = connect(self._url)
        await self._broker.start()
        consumers: list[_Consumer] = []
        services: RunningServices | None = None
        try:
            for hook in self._startup:
                await hook()
            for spec in self.subscribers:
                consumer = _Consumer(self, spec)
                await consumer.start()
                consumers.append(consumer)
            services = RunningServices(self.services, self._broker)
            services.start()
            yield self
        finally:
            await asyncio.gather(
                *(c.stop(self.shutdown_timeout) for c in consumers),
                *([services.stop(self.shutdown_timeout)] if services else []),
            )
            try:
                for hook in self._shutdown:
                    await hook()
            finally:
                if owns_broker:
                    await self._broker.close()
                    self._broker = None


class _Consumer:
    """Feeds one subscriber's deliveries to its handler, `concurrency` at a time."""

    def __init__(self, app: App, spec: SubscriberSpec) -> None:
        self.app = app
        self.spec = spec
        self.policy = spec.retry or app.retry
        middlewares = [*app.middleware, *spec.middleware]
        self.call: CallNext = chain(middlewares, compile_handler(spec.handler))
        self._subscription: Subscription | None = None
        self._slots: asyncio.Semaphore | AimdLimit = (
            AimdLimit(spec.adaptive, spec.concurrency)
            if spec.adaptive
            else asyncio.Semaphore(spec.concurrency)
        )
        spec.stats.concurrency_limit = (
            self._slots.limit if isinstance(self._slots, AimdLimit) else spec.concurrency
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._limiter: Limiter | None = None
        self._owns_limiter = False

    async def start(self) -> None:
        self._limiter = self._make_limiter()
        self._subscription = await self.app.broker.subscribe(
            self.spec.topic, group=self.spec.group, prefetch=self.spec.prefetch
        )
        self._reader = asyncio.create_task(self._read(), name=f"mqkit-{self.spec.group}")

    def _make_limiter(self) -> Limiter | None:
        # Made here, in the running loop: a Redis client belongs to the loop that uses it.
        limit = self.spec.limit
        if not isinstance(limit, RateLimit):
            return limit
        self._owns_limiter = True
        if limit.key is None:
            return LocalLimiter(limit.rate, limit.burst)
        limiter_class = plugin(LIMITERS, self.app.limits_url or "", "shared limiter")
        shared: Limiter = limiter_class(
            self.app.limits_url,
            rate=limit.rate,
            burst=limit.burst,
            name=limit.key,
            on_outage=self.app.limits_outage,
            workers=self.app.limits_workers,
        )
        return shared

    async def _read(self) -> None:
        assert self._subscription is not None
        async for delivery in self._subscription:
            await self._slots.acquire()
            if self._limiter is not None and self.spec.rate_by is None:
                # Waiting here is what holds back the fetch: the subscription's small
                # prefetch fills, and the rest stays in the broker.
                await acquire(self._limiter)
            task = asyncio.create_task(self._handle(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, delivery: Delivery) -> None:
        stats = self.spec.stats
        stats.in_flight += 1
        started = time.monotonic()
        ok = True  # for adaptive concurrency: did the downstream cope?
        message = delivery.message
        ctx = Context(message=message, topic=message.topic, group=self.spec.group)
        try:
            if self._limiter is not None and self.spec.rate_by is not None:
                await acquire(self._limiter, self.spec.rate_by(message))
                started = time.monotonic()  # latency is the handler's, not the wait
            if message.headers.get(REPLAY_GROUP, self.spec.group) != self.spec.group:
                ctx.state["mqkit.skipped"] = True  # a DLQ replay for another group
            else:
                await self.call(ctx)
        except Retry as request:
            ok = False
            # An explicit Retry is an attempt too: it ends in the DLQ once they run out.
            if self.policy.exhausted(message.attempt):
                await self._dead_letter(delivery, request)
            else:
                stats.retried += 1
                await delivery.nack(request.delay)
        except (DecodeError, Reject) as exc:
            stats.dead_lettered += 1
            await delivery.reject(exc)
        except Exception as exc:
            ok = False
            if self.policy.should_retry(exc, message.attempt):
                delay = self.policy.delay(message.attempt)
                stats.retried += 1
                log.warning(
                    "mqkit: %s failed on attempt %d (%s: %s); retrying in %.2fs",
                    message.id,
                    message.attempt,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await delivery.nack(delay)
            else:
                await self._dead_letter(delivery, exc)
        else:
            await delivery.ack()
            if ctx.state.get("mqkit.skipped"):
                stats.skipped += 1
            elif ctx.state.get("mqkit.duplicate"):
                stats.duplicates += 1
            else:
                stats.handled += 1
        finally:
            stats.in_flight -= 1
            if isinstance(self._slots, AimdLimit):
                await self._slots.release(ok=ok, latency=time.monotonic() - started)
                stats.concurrency_limit = self._slots.limit
            else:
                self._slots.release()

    async def _dead_letter(self, delivery: Delivery, exc: Exception) -> None:
        self.spec.stats.dead_lettered += 1
        message = delivery.message
        log.error(
            "mqkit: %s dead-lettered after attempt %d: %s: %s",
            message.id,
            message.attempt,
            type(exc).__name__,
            exc,
        )
        await delivery.reject(exc)

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
        if self._limiter is not None and self._owns_limiter:
            await self._limiter.close()
