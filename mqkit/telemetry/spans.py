"""Spans after OpenTelemetry's messaging conventions: a producer span per publish (`send
<topic>`, one for a batch, its context written into every message), and a consumer span per
handled message (`process <topic>`), a child of the producer's context that the message
carries, so one trace runs from a publish through every attempt, the dead letter and its
replay. Imported only once a TracerProvider is installed (see tracing.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from mqkit.message import Message
from mqkit.telemetry import propagation


def _destination(topics: set[str]) -> str:
    return next(iter(topics)) if len(topics) == 1 else "(several)"


@contextmanager
def sending(tracer: Tracer, system: str, messages: Sequence[Message]) -> Iterator[list[Message]]:
    """A `send` span around publishing `messages`; yields them with its context in their
    headers (copies), which is what the backend must send."""
    destination = _destination({m.topic for m in messages})
    attributes: dict[str, str | int] = {
        "messaging.system": system,
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": destination,
    }
    if len(messages) == 1:
        attributes["messaging.message.id"] = messages[0].id
    else:
        attributes["messaging.batch.message_count"] = len(messages)
    with tracer.start_as_current_span(
        f"send {destination}", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        yield [m.with_changes(headers=propagation.carrier(m.headers)) for m in messages]


@contextmanager
def processing(tracer: Tracer, system: str, message: Message, group: str) -> Iterator[Span]:
    """A `process` span for one handled message, continuing the trace it carries; current
    while the handler runs, so what the handler publishes is a child of it."""
    attributes: dict[str, str | int] = {
        "messaging.system": system,
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": message.topic,
        "messaging.consumer.group.name": group,
        "messaging.message.id": message.id,
        "mqkit.attempt": message.attempt,
    }
    if message.key is not None:
        attributes["messaging.message.key"] = message.key
    with tracer.start_as_current_span(
        f"process {message.topic}",
        context=propagation.extract(message.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def outcome(span: Span, outcome: str | None, error: BaseException | None) -> None:
    """What became of the message; the handler's exception, if it raised."""
    span.set_attribute("mqkit.outcome", outcome or "unknown")
    if error is not None:
        span.record_exception(error)
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
