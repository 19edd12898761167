"""Traces after OpenTelemetry's messaging conventions (mqkit.telemetry), on `memory://` with
the SDK's in-memory exporter: a `send` span per publish whose context every message carries
in `traceparent`, a `process` span per handled message continuing it, through every retry
attempt, the dead letter, and what a handler publishes; nothing at all without a provider."""

from __future__ import annotations

import itertools
import uuid

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_trace_globals
from opentelemetry.trace import SpanKind, StatusCode

import mqkit
from mqkit.dlq import DeadLetters
from mqkit.retry import RetryPolicy
from mqkit.testing import TestApp
from mqkit.testing.waiting import until
from tests.support.tracing import ids, ids_of, install, named, spans

__all__ = ["spans"]  # the fixture


async def test_without_a_provider_there_are_no_spans_and_no_headers() -> None:
    async with mqkit.connect("memory://") as broker:
        sub = await broker.subscribe("t", group="g")
        sent = await broker.publish("t", b"x", headers={"a": "1"})
        got = (await anext(sub)).message
        await sub.close()
    assert dict(sent.headers) == dict(got.headers) == {"a": "1"}


async def test_a_publish_and_its_handling_are_one_trace(spans: InMemorySpanExporter) -> None:
    app = mqkit.App()

    @app.subscriber("orders", group="billing")
    async def bill(body: bytes) -> None:
        pass

    async with TestApp(app) as t:
        sent = await t.publish("orders", b"x", key="k1")
        await t.settled()
    [send] = named(spans, "send orders")
    [process] = named(spans, "process orders")
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert ids(sent.headers["traceparent"]) == ids_of(send)
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.context.trace_id == send.context.trace_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "mqkit.memory",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": "orders",
        "messaging.message.id": sent.id,
    }
    assert dict(process.attributes or {}) == {
        "messaging.system": "mqkit.memory",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "orders",
        "messaging.consumer.group.name": "billing",
        "messaging.message.id": sent.id,
        "messaging.message.key": "k1",
        "mqkit.attempt": 1,
        "mqkit.outcome": "handled",
    }
    assert process.status.status_code == StatusCode.UNSET


async def test_every_attempt_and_the_dead_letter_are_in_the_publishs_trace(
    spans: InMemorySpanExporter,
) -> None:
    app = mqkit.App(retry=RetryPolicy(max_attempts=3, base_delay=0.01, jitter=False))

    @app.subscriber("orders", group="billing")
    async def bill(body: bytes) -> None:
        raise ValueError("card declined")

    async with TestApp(app) as t:
        sent = await t.publish("orders", b"x")
        await t.settled()
        [dead] = await t.dead_letters("orders", "billing")
    [send] = named(spans, "send orders")
    attempts = sorted(named(spans, "process orders"), key=lambda s: s.start_time or 0)
    assert [s.attributes and s.attributes["mqkit.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.attributes and s.attributes["mqkit.outcome"] for s in attempts] == [
        "retried",
        "retried",
        "dead_lettered",
    ]
    for attempt in attempts:
        assert attempt.context.trace_id == send.context.trace_id
        assert attempt.parent is not None and attempt.parent.span_id == send.context.span_id
        assert attempt.status.status_code == StatusCode.ERROR
        assert attempt.attributes and attempt.attributes["error.type"] == "ValueError"
        [event] = attempt.events
        assert event.name == "exception" and event.attributes
        assert event.attributes["exception.message"] == "card declined"
    # The dead letter is sent from within the last attempt, and carries that context on.
    [dlq_send] = named(spans, "send orders.dlq")
    assert dlq_send.parent is not None and dlq_send.parent.span_id == attempts[-1].context.span_id
    assert dead.message.id == sent.id
    assert ids(dead.message.headers["traceparent"]) == ids_of(dlq_send)


async def test_a_replayed_dead_letter_stays_in_the_trace_that_dead_lettered_it(
    spans: InMemorySpanExporter,
) -> None:
    app = mqkit.App(retry=RetryPolicy(max_attempts=1))
    broken = True

    @app.subscriber("orders", group="billing")
    async def bill(body: bytes) -> None:
        if broken:
            raise ValueError("card declined")

    async with TestApp(app) as t:
        await t.publish("orders", b"x")
        await t.settled()
        broken = False
        assert len(await DeadLetters(t.broker, "orders", idle=0.2).replay()) == 1
        await until(lambda: t.stats("orders").handled == 1)
    [dlq_send] = named(spans, "send orders.dlq")
    first, again = sorted(named(spans, "process orders"), key=lambda s: s.start_time or 0)
    [replay_send] = [s for s in named(spans, "send orders") if s.links]
    assert first.attributes and first.attributes["mqkit.outcome"] == "dead_lettered"
    assert again.attributes and again.attributes["mqkit.outcome"] == "handled"
    assert again.parent is not None and again.parent.span_id == dlq_send.context.span_id
    assert again.context.trace_id == first.context.trace_id
    [link] = replay_send.links
    assert link.context.span_id == dlq_send.context.span_id


async def test_what_a_handler_publishes_continues_its_trace(spans: InMemorySpanExporter) -> None:
    app = mqkit.App()

    @app.subscriber("orders", group="billing")
    async def bill(body: bytes) -> None:
        await app.broker.publish("invoices", body)

    @app.subscriber("invoices", group="mail")
    async def mail(body: bytes) -> None:
        pass

    async with TestApp(app) as t:
        await t.publish("orders", b"x")
        await until(lambda: t.stats("invoices").handled == 1)
    [first] = named(spans, "send orders")
    [bill_span] = named(spans, "process orders")
    [second] = named(spans, "send invoices")
    [mail_span] = named(spans, "process invoices")
    chain = [first, bill_span, second, mail_span]
    assert len({s.context.trace_id for s in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None and child.parent.span_id == parent.context.span_id


async def test_a_trace_started_elsewhere_is_continued() -> None:
    """A `traceparent` written by a client mqkit did not instrument (kcat, a service in
    another language): the process span is its child."""
    theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    url = f"memory://elsewhere-{uuid.uuid4().hex}"
    app = mqkit.App()

    @app.subscriber("orders", group="billing")
    async def bill(body: bytes) -> None:
        pass

    async with mqkit.connect(url) as other:  # no provider yet: publishes as it is given
        await other.publish("orders", b"x", headers={"traceparent": theirs})
        exporter = install()
        try:
            async with TestApp(app, url) as t:
                await until(lambda: t.stats("orders").handled == 1)
        finally:
            reset_trace_globals()
    [process] = named(exporter, "process orders")
    assert process.parent is not None and process.parent.is_remote
    assert process.parent.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert process.parent.span_id == 0x00F067AA0BA902B7
