"""The worker application: subscribers, middleware, services, lifecycle.

    app = mqkit.App()

    @app.subscriber("orders", group="billing", concurrency=8)
    async def bill(order: Order) -> None:
        ...

`mqkit run module:app` runs it. Returning acks the message; raising retries it per the
retry policy and, once attempts run out, dead-letters it; a body that does not decode into
the annotation is dead-lettered at once. On SIGINT/SIGTERM the worker stops fetching, gives
in-flight handlers and services `shutdown_timeout` seconds, and leaves everything
unfinished for redelivery. The App only declares; mqkit.worker.consumer runs each
subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from mqkit.adaptive import AdaptiveConcurrency
from mqkit.broker import Broker
from mqkit.errors import BrokerUnavailableError, ConfigurationError
from mqkit.handlers import Handler
from mqkit.message import Message
from mqkit.middleware import Middleware
from mqkit.ratelimit import Limiter
from mqkit.ratelimit.limiter import Outage
from mqkit.registry import connect
from mqkit.retry import RetryPolicy
from mqkit.service import RunningServices, ServiceSpec
from mqkit.stats import HasStats
from mqkit.telemetry import polling
from mqkit.worker.batch import BatchConsumer
from mqkit.worker.consumer import Consumer
from mqkit.worker.fetch_gate import SharedLimits
from mqkit.worker.lag_meter import meter_lag
from mqkit.worker.subscriber import SubscriberSpec, declare

H = TypeVar("H", bound=Handler)
Hook = Callable[[], Awaitable[None]]


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
        lag_interval: float = polling.DEFAULT_INTERVAL,
    ) -> None:
        """`limits_url` (Redis) holds the limits subscribers share by `rate_key`; while it is
        unreachable they pause (`limits_outage="pause"`) or each process keeps to
        rate / `limits_workers` on its own (`"local"`): see mqkit_redis.limiter.
        `lag_interval`: how often the subscriptions' lag is read for the metrics (only while
        a MeterProvider is installed)."""
        self._url = url
        self.limits_url = limits_url
        self.limits_outage = limits_outage
        self.limits_workers = limits_workers
        self.lag_interval = lag_interval
        self._broker = broker
        self.retry = retry or RetryPolicy()
        self.middleware: list[Middleware] = list(middleware)
        self.shutdown_timeout = shutdown_timeout
        self.subscribers: list[SubscriberSpec] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self.services: list[ServiceSpec] = []
        self._running_services: RunningServices | None = None
        self._consumers: list[Consumer | BatchConsumer] | None = None  # while running

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
        batch: int | None = None,
        batch_timeout: float = 0.05,
        exactly_once: bool = False,
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
        `concurrency` on their latency and errors (see mqkit.adaptive).

        `batch=500` hands the handler lists (`async def handle(orders: list[Order])`) of up
        to 500 messages, waiting at most `batch_timeout` seconds after the first for the
        rest, and acks each list in one request where the broker allows: see
        mqkit.worker.batch for what becomes of undecodable bodies and failures
        (`mqkit.BatchFailed` retries only some). `concurrency` is then batches at once.

        `exactly_once=True` (Kafka; a broker without `native_transactions` raises
        CapabilityError when the App starts): what the handler publishes with
        `ctx.publish(...)`, and the commit of the message's offset, are one Kafka
        transaction. A handler that raises publishes nothing and the message comes again,
        as the retry policy says; a dead letter is part of the transaction too."""
        make_spec = declare(
            topic,
            shares_limits=self.limits_url is not None,
            group=group,
            concurrency=concurrency,
            prefetch=prefetch,
            retry=retry,
            middleware=middleware,
            rate=rate,
            burst=burst,
            rate_key=rate_key,
            limiter=limiter,
            rate_by=rate_by,
            adaptive=adaptive,
            batch=batch,
            batch_timeout=batch_timeout,
            exactly_once=exactly_once,
        )

        def register(handler: H) -> H:
            self.subscribers.append(make_spec(handler))
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
    def url(self) -> str | None:
        """The broker URL the app was given (None: MQKIT_URL, else the default)."""
        return self._url

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            raise RuntimeError("the app is not running yet: its broker is made by run()")
        return self._broker

    async def publish(self, topic: str, payload: Any = b"", **kwargs: Any) -> Message:
        """Publish through the app's broker (see Broker.publish)."""
        return await self.broker.publish(topic, payload, **kwargs)

    def stats(self) -> dict[str, dict[str, int]]:
        """Every subscriber's stats, and those of the running services that keep them, in
        one shape (see mqkit.stats): {"subscriber orders/billing": {...}, ...}."""
        shown = {f"subscriber {s.name}": s.stats.snapshot() for s in self.subscribers}
        for service in self._running_services.services if self._running_services else ():
            if isinstance(service, HasStats):
                shown[f"service {type(service).__name__}"] = service.stats.snapshot()
        return shown

    async def ready(self) -> str | None:
        """Why the app cannot do its work now, or None when it can: it is running, its
        broker answers (Broker.check) and every subscriber takes messages. `/readyz`
        (`--metrics-port`) answers 503 with this."""
        consumers = self._consumers
        if consumers is None or self._broker is None:
            return "the app is not running"
        try:
            await self._broker.check()
        except BrokerUnavailableError as exc:
            return str(exc)
        return next((p for c in consumers if (p := c.problem()) is not None), None)

    # -- running -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or forever), then shut down gracefully."""
        async with self.running():
            await (stop or asyncio.Event()).wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[App]:
        """Start the app for the duration of the block; for tests and embedding."""
        batched = [s.name for s in self.subscribers if s.batch is not None]
        if batched and self.middleware:
            raise ConfigurationError(
                f"the App's middleware takes one message at a time; {', '.join(batched)} "
                "take batches (batch=): run them in an App without middleware"
            )
        owns_broker = self._broker is None
        if self._broker is None:
            self._broker = connect(self._url)
        await self._broker.start()
        consumers: list[Consumer | BatchConsumer] = []
        services: RunningServices | None = None
        lag_meter: asyncio.Task[None] | None = None
        shared = SharedLimits(self.limits_url, self.limits_outage, self.limits_workers)
        try:
            for hook in self._startup:
                await hook()
            for spec in self.subscribers:
                consumer: Consumer | BatchConsumer
                if spec.batch is not None:
                    consumer = BatchConsumer(spec, policy=spec.retry or self.retry)
                else:
                    consumer = Consumer(
                        spec,
                        policy=spec.retry or self.retry,
                        app_middleware=self.middleware,
                        shared_limits=shared,
                    )
                await consumer.start(self._broker)
                consumers.append(consumer)
            services = self._running_services = RunningServices(self.services, self._broker)
            services.start()
            self._consumers = consumers
            pairs = [(spec.topic, spec.group) for spec in self.subscribers]
            lag_meter = meter_lag(self._broker, pairs, self.lag_interval)
            yield self
        finally:
            await polling.stop(lag_meter)
            self._consumers = None
            await asyncio.gather(
                *(c.stop(self.shutdown_timeout) for c in consumers),
                *([services.stop(self.shutdown_timeout)] if services else []),
            )
            self._running_services = None
            try:
                for hook in self._shutdown:
                    await hook()
            finally:
                if owns_broker:
                    await self._broker.close()
                    self._broker = None
