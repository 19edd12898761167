"""A subscriber's declaration: what `@app.subscriber(...)` records, checked when declared
so that a mistake fails at import time, not at the first message."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mqkit.adaptive import AdaptiveConcurrency
from mqkit.broker import validate_topic
from mqkit.handlers import Handler, compile_handler, default_group
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
) -> Callable[[Handler], SubscriberSpec]:
    """Check `App.subscriber`'s arguments now, before the handler is known; what makes the
    spec once it is. `shares_limits`: the App has a limits_url for `rate_key=`."""
    validate_topic(topic)
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
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
        compile_handler(handler)  # fail at import time, not at the first message
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
        )

    return spec
