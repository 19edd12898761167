"""Spans after OpenTelemetry's messaging conventions: a producer span per publish (`send
<topic>`, one for a batch, its context written into every message), and a consumer span per
handled message (`process <topic>`), a child of the producer's context that the message
carries, so one trace runs from a publish through every attempt, the dead letter and its
replay. Imported only once a TracerProvider is installed (see tracing.py).

A message stored to be sent later (the outbox, a half message) gets its context when it is
made: a `create <topic>` span, in the trace of whoever made it. The publish that finally
sends it (the relay's, the commit's) links to that context and leaves it in the message, so
the consumer continues the trace of the business transaction, as the conventions say for a
creation context. Steps in between (a half message's commit, its check-back) are spans in
that trace too (`stage`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer

from mqkit.message import Message
from mqkit.telemetry import propagation

Attributes = dict[str, str | int]


def _destination(topics: set[str]) -> str:
    return next(iter(topics)) if len(topics) == 1 else "(several)"


def created(tracer: Tracer, message: Message, attributes: Attributes) -> Message:
    """A `create <topic>` span for a message stored to be sent later; the message with its
    context in the headers (a copy), to store."""
    attributes = {
        **attributes,
        "messaging.operation.name": "create",
        "messaging.operation.type": "create",
        "messaging.destination.name": message.topic,
        "messaging.message.id": message.id,
    }
    with tracer.start_as_current_span(
        f"create {message.topic}", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        return message.with_changes(headers=propagation.carrier(message.headers))


@contextmanager
def stage(
    tracer: Tracer, name: str, message: Message, attributes: Attributes, *, own_trace: bool
) -> Iterator[Span]:
    """A span for a step on a stored message (`commit`, `check`). `own_trace`: the step runs
    where no trace is current (a checker's loop), so it joins the message's trace as a child
    of its creation; otherwise it is a child of the current span, linked to the creation."""
    # The creation context is read once: as the parent, or for the link.
    carried = None if own_trace else _creation(message)
    attributes = {**attributes, "messaging.message.id": message.id}
    with tracer.start_as_current_span(
        f"{name} {message.topic}",
        context=propagation.extract(message.headers) if own_trace else None,
        links=[] if carried is None else [Link(carried)],
        attributes=attributes,
    ) as span:
        yield span


@contextmanager
def sending(
    tracer: Tracer, system: str, messages: Sequence[Message], *, created: bool = False
) -> Iterator[Sequence[Message]]:
    """A `send` span around publishing `messages`; yields them with its context in their
    headers (copies), which is what the backend must send. `created`: the messages were
    stored to be sent later; those that carry a creation context (see the module's text)
    keep it, and the span links to it."""
    destination = _destination({m.topic for m in messages})
    attributes: Attributes = {
        "messaging.system": system,
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": destination,
    }
    if len(messages) == 1:
        attributes["messaging.message.id"] = messages[0].id
    else:
        attributes["messaging.batch.message_count"] = len(messages)
    # Only stored messages carry a creation context: a plain publish reads none.
    creations = [_creation(m) for m in messages] if created else [None] * len(messages)
    links = [Link(c) for c in creations if c is not None]
    with tracer.start_as_current_span(
        f"send {destination}", kind=SpanKind.PRODUCER, attributes=attributes, links=links
    ):
        context = propagation.carrier({})  # the same for every message: written once
        yield [
            m if c is not None else m.with_changes(headers={**m.headers, **context})
            for m, c in zip(messages, creations, strict=True)
        ]


def _creation(message: Message) -> SpanContext | None:
    """The creation context `message` carries, if any (one stored while nobody traced has
    none: it gets the send span's, as a message published directly would)."""
    context = trace.get_current_span(propagation.extract(message.headers)).get_span_context()
    return context if context.is_valid else None


@contextmanager
def processing(tracer: Tracer, system: str, message: Message, group: str) -> Iterator[Span]:
    """A `process` span for one handled message, continuing the trace it carries; current
    while the handler runs, so what the handler publishes is a child of it."""
    attributes: Attributes = {
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


@contextmanager
def processing_batch(
    tracer: Tracer, system: str, messages: Sequence[Message], group: str
) -> Iterator[Span]:
    """A `process` span for a batch handler's call: in a trace of its own, linked to the
    context each message carries (a batch has many parents), as the conventions say."""
    destination = _destination({m.topic for m in messages})
    attributes: Attributes = {
        "messaging.system": system,
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": destination,
        "messaging.consumer.group.name": group,
        "messaging.batch.message_count": len(messages),
    }
    carried = (
        trace.get_current_span(propagation.extract(m.headers)).get_span_context() for m in messages
    )
    with tracer.start_as_current_span(
        f"process {destination}",
        context=Context(),  # a root: not the child of whatever trace started the worker
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=[Link(c) for c in carried if c.is_valid],
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
