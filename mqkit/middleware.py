"""The middleware chain around handlers.

A middleware is `async def mw(ctx: Context, call_next: CallNext) -> None`: it may look at or
change the context, call `await call_next(ctx)` to go on (or not, to skip the handler), and
see the handler's exception. Retries, idempotency and rate limits are middlewares, so they
compose with the user's own in the order given: the first listed is the outermost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mqkit.message import Message


@dataclass(slots=True)
class Context:
    """What a middleware or handler knows about the message being handled."""

    message: Message
    topic: str
    group: str
    state: dict[str, Any] = field(default_factory=dict)


CallNext = Callable[[Context], Awaitable[None]]
Middleware = Callable[[Context, CallNext], Awaitable[None]]


def chain(middlewares: Sequence[Middleware], endpoint: CallNext) -> CallNext:
    """Wrap `endpoint` so that middlewares[0] runs first."""
    call = endpoint
    for middleware in reversed(middlewares):
        call = _bind(middleware, call)
    return call


def _bind(middleware: Middleware, call_next: CallNext) -> CallNext:
    async def call(ctx: Context) -> None:
        await middleware(ctx, call_next)

    return call
