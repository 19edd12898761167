"""The metrics policy: per delivery, the conventions' consumed count and process duration
(with mqkit.outcome, and error.type when the handler raised), the handlers in flight, and
mqkit's retries and dead letters (mqkit.telemetry.instruments). In the chain only when a
MeterProvider is installed as the App starts (imported only then: it imports
OpenTelemetry)."""

from __future__ import annotations

import time

from mqkit.middleware import CallNext, Context, Middleware
from mqkit.telemetry.instruments import Attributes, Instruments


def measuring(meters: Instruments, system: str, group: str) -> Middleware:
    by_topic: dict[str, Attributes] = {}  # a pattern subscription sees several topics

    def attributes_of(topic: str) -> Attributes:
        attributes = by_topic.get(topic)
        if attributes is None:
            attributes = by_topic[topic] = {
                "messaging.system": system,
                "messaging.operation.name": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": group,
            }
        return attributes

    async def middleware(ctx: Context, call_next: CallNext) -> None:
        attributes = attributes_of(ctx.message.topic)
        meters.in_flight.add(1, attributes)
        started = time.perf_counter()
        try:
            await call_next(ctx)
        finally:
            took = time.perf_counter() - started
            meters.in_flight.add(-1, attributes)
            outcome = ctx.outcome or "unknown"
            settled: Attributes = {**attributes, "mqkit.outcome": outcome}
            if ctx.error is not None:
                settled["error.type"] = type(ctx.error).__qualname__
            meters.consumed.add(1, settled)
            meters.process_duration.record(took, settled)
            if outcome == "retried":
                meters.retries.add(1, attributes)
            elif outcome in ("dead_lettered", "rejected"):
                reason = "attempts" if outcome == "dead_lettered" else "rejected"
                meters.dead_letters.add(1, {**attributes, "mqkit.reason": reason})

    return middleware
