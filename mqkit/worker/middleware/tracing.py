"""The tracing policy: a `process` span around everything else the worker does with a
message (mqkit.telemetry.spans), with the outcome and the handler's exception on it.
In the chain only when a TracerProvider is installed as the App starts (and imported only
then: it imports OpenTelemetry)."""

from __future__ import annotations

from opentelemetry.trace import Tracer

from mqkit.middleware import CallNext, Context, Middleware
from mqkit.telemetry import spans


def tracing_spans(tracer: Tracer, system: str) -> Middleware:
    async def middleware(ctx: Context, call_next: CallNext) -> None:
        with spans.processing(tracer, system, ctx.message, ctx.group) as span:
            try:
                await call_next(ctx)
            finally:
                spans.outcome(span, ctx.outcome, ctx.error)

    return middleware
