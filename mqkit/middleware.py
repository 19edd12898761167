"""The middleware chain around handlers.

A middleware is `async def mw(ctx: Context, call_next: CallNext) -> None`: it may look at or
change the context, call `await call_next(ctx)` to go on (or not, to skip the handler), and
see the handler's exception. The worker's own policies (stats, retry and dead-lettering, the
replay filter, keyed rate limits: mqkit.worker.middleware) are middlewares too, outside the
user's, which compose in the order given: the first listed is the outermost.

A middleware that decides the message's fate without the handler sets `ctx.outcome` (the
idempotency middleware sets "duplicate"), so the stats count it as such and not as handled.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mqkit.message import Message

if TYPE_CHECKING:
    from mqkit.broker import Delivery

# What became of a message: "rejected" is a poison message (it does not decode, or the
# handler raised Reject), dead-lettered at once; "dead_lettered" ran out of attempts.
Outcome = Literal["handled", "duplicate", "skipped", "retried", "dead_lettered", "rejected"]


@dataclass(slots=True)
class Context:
    """What a middleware or handler knows about the message being handled."""

    message: Message
    topic: str
    group: str
    state: dict[str, Any] = field(default_factory=dict)
    # The broker's delivery, settled by the retry policy once the chain returns or raises;
    # None when a handler is called outside a worker (tests).
    delivery: Delivery | None = None
    outcome: Outcome | None = None
    # What the handler (or a middleware inside the retry policy) raised, once the policy
    # has settled the delivery for it.
    error: BaseException | None = None
    # When the handler's turn began (on the loop's clock), after any keyed rate-limit wait.
    started: float = field(default_factory=time.monotonic)

    async def publish(self, topic: str, payload: Any = b"", **options: Any) -> Message:
        """Publish as part of handling this message (Delivery.publish): on an exactly-once
        subscriber, in one transaction with the input's ack; elsewhere at once."""
        if self.delivery is None:
            raise RuntimeError("ctx.publish needs the worker's delivery: publish via a broker")
        return await self.delivery.publish(topic, payload, **options)


CallNext = Callable[[Context], Awaitable[None]]
Middleware = Callable[[Context, CallNext], Awaitable[None]]


def chain(middlewares: Sequence[Middleware], endpoint: CallNext) -> CallNext:
    """Wrap `endpoint` so that middlewares[0] runs first."""
    call = endpoint
    for middleware in reversed(middlewares):
        call = _bind(middleware, call)
    return call


def _bind(middleware: Middleware, call_next: CallNext) -> CallNext:
    # A plain function handing back the middleware's own awaitable: one coroutine a layer
    # on the worker's hot path, not two.
    def call(ctx: Context) -> Awaitable[None]:
        return middleware(ctx, call_next)

    return call
