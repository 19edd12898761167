"""Keyed rate limits (`rate_by=lambda m: m.key`): a message waits for its key's turn inside
its handler slot, so the other keys go on while slots are free. (An un-keyed limit is not
a middleware: it holds back the fetch, see mqkit.worker.fetch_gate.)"""

from __future__ import annotations

import time
from collections.abc import Callable

from mqkit.message import Message
from mqkit.middleware import CallNext, Context, Middleware
from mqkit.ratelimit import Limiter, acquire


def keyed_limit(
    limiter: Limiter,
    key_of: Callable[[Message], str],
    waited: Callable[[float], None] | None = None,
) -> Middleware:
    """`waited` is told the seconds each message waited (the metric)."""

    async def middleware(ctx: Context, call_next: CallNext) -> None:
        seconds = await acquire(limiter, key_of(ctx.message))
        if waited is not None:
            waited(seconds)
        ctx.started = time.monotonic()  # the handler's latency, not the wait's
        await call_next(ctx)

    return middleware
