"""The metrics policy: per delivery, the conventions' consumed count and process duration
(with mqkit.outcome, and error.type when the handler raised), the handlers in flight, and
mqkit's retries and dead letters (mqkit.telemetry.instruments). In the chain only when a
MeterProvider is installed as the App starts (imported only then: it imports
OpenTelemetry)."""

from __future__ import annotations

import time
from collections.abc import Callable

from mqkit.middleware import CallNext, Context, Middleware
from mqkit.telemetry.instruments import Attributes, Instruments

Record = Callable[[Context, float], None]


def measuring(meters: Instruments, system: str, group: str) -> Middleware:
    attributes, record = recorder(meters, system, group)

    async def middleware(ctx: Context, call_next: CallNext) -> None:
        topic = ctx.message.topic
        meters.in_flight.add(1, attributes(topic))
        started = time.perf_counter()
        try:
            await call_next(ctx)
        finally:
            meters.in_flight.add(-1, attributes(topic))
            record(ctx, time.perf_counter() - started)

    return middleware


def recorder(
    meters: Instruments, system: str, group: str
) -> tuple[Callable[..., Attributes], Record]:
    """The attributes of a topic (with (name, value) pairs flattened in), and what records
    a settled message that took `seconds`: a batch subscriber records each of its messages
    with the batch's time."""
    # Attribute sets made once each and reused: this runs once per message, and a pattern
    # subscription sees several topics.
    made: dict[tuple[str, ...], Attributes] = {}

    def attributes(topic: str, *extra: str) -> Attributes:
        key = (topic, *extra)
        found = made.get(key)
        if found is None:
            found = made[key] = {
                "messaging.system": system,
                "messaging.operation.name": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": group,
                **dict(zip(extra[::2], extra[1::2], strict=True)),
            }
        return found

    def record(ctx: Context, seconds: float) -> None:
        topic = ctx.message.topic
        outcome = ctx.outcome or "unknown"
        if ctx.error is None:
            settled = attributes(topic, "mqkit.outcome", outcome)
        else:
            error = type(ctx.error).__qualname__
            settled = attributes(topic, "mqkit.outcome", outcome, "error.type", error)
        meters.consumed.add(1, settled)
        meters.process_duration.record(seconds, settled)
        if outcome == "retried":
            meters.retries.add(1, attributes(topic))
        elif outcome in ("dead_lettered", "rejected"):
            reason = "attempts" if outcome == "dead_lettered" else "rejected"
            meters.dead_letters.add(1, attributes(topic, "mqkit.reason", reason))

    return attributes, record
