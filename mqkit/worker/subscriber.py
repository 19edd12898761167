"""A subscriber's declaration: what `@app.subscriber(...)` records, checked when declared
so that a mistake fails at import time, not at the first message."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mqkit.adaptive import AdaptiveConcurrency
from mqkit.broker import validate_topic
from mqkit.handlers import Handler, compile_batch_handler, compile_handler, default_group
from mqkit.message import Message
from mqkit.middleware import Middleware
from mqkit.ratelimit import Limiter, Rate
from mqkit.retry import RetryPolicy
from mqkit.worker.fetch_gate import RateLimit
from mqkit.worker.middleware.stats import Stats


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
    # With `batch`, the handler takes lists of up to this many (see mqkit.worker.batch).
    batch: int | None = None
    batch_timeout: float = 0.05
    # What the handler publishes through its context commits with the offset (Kafka).
    exactly_once: bool = False
    stats: Stats = field(default_factory=Stats)

    @property
    def name(self) -> str:
        return f"{self.topic}/{self.group}"


def declare(
    topic: str,
    *,
    shares_limits: bool,
    group: str | None,
    concurrency: int,
    prefetch: int | None,
    retry: RetryPolicy | None,
    middleware: Sequence[Middleware],
    rate: str | float | None,
    burst: int,
    rate_key: str | None,
    limiter: Limiter | None,
    rate_by: Callable[[Message], str] | None,
    adaptive: AdaptiveConcurrency | None,
    batch: int | None = None,
    batch_timeout: float = 0.05,
    exactly_once: bool = False,
) -> Callable[[Handler], SubscriberSpec]:
    """Check `App.subscriber`'s arguments now, before the handler is known; what makes the
    spec once it is. `shares_limits`: the App has a limits_url for `rate_key=`."""
    validate_topic(topic)
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if batch is not None and exactly_once:
        # A batch is settled by its own policy (mqkit.worker.batch), not one message's
        # transaction: neither would keep the other's promise.
        raise ValueError("exactly_once=True handles one message at a time: it cannot take batch=")
    if batch is not None:
        _check_batch(
            batch,
            batch_timeout,
            concurrency,
            prefetch,
            {
                "middleware=": bool(middleware),
                "rate=": rate is not None,
                "limiter=": limiter is not None,
                "rate_by=": rate_by is not None,
                "adaptive=": adaptive is not None,
            },
        )
        prefetch = prefetch or batch * (concurrency + 1)  # the next batch fetched meanwhile
    limit: RateLimit | Limiter | None = limiter
    if rate is not None:
        if limiter is not None:
            raise ValueError("give rate= or limiter=, not both")
        if rate_key is not None and not shares_limits:
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
    fetched = prefetch

    def spec(handler: Handler) -> SubscriberSpec:
        # Fail at import time, not at the first message.
        if batch is None:
            compile_handler(handler)
        else:
            compile_batch_handler(handler)
        return SubscriberSpec(
            topic=topic,
            group=group or default_group(handler),
            handler=handler,
            concurrency=concurrency,
            prefetch=fetched,
            retry=retry,
            middleware=list(middleware),
            limit=limit,
            rate_by=rate_by,
            adaptive=adaptive,
            batch=batch,
            batch_timeout=batch_timeout,
            exactly_once=exactly_once,
        )

    return spec


def _check_batch(
    batch: int,
    timeout: float,
    concurrency: int,
    prefetch: int | None,
    given: dict[str, bool],
) -> None:
    if batch < 1:
        raise ValueError("batch must be >= 1")
    if timeout < 0:
        raise ValueError("batch_timeout must be >= 0 seconds")
    if prefetch is not None and prefetch < batch * concurrency:
        raise ValueError(
            f"prefetch={prefetch} cannot fill {concurrency} batch(es) of {batch}: give at "
            f"least batch * concurrency ({batch * concurrency}), or leave it to the default"
        )
    # Each of these acts on one message at a time; a batch would bypass it unseen.
    for option in (name for name, on in given.items() if on):
        raise ValueError(f"{option} works on one message at a time: it cannot take batch=")
