"""Batch subscribers (mqkit.worker.batch) on `memory://`: what a declaration refuses, what a
batch handler is given, BatchFailed naming what is not in the batch, stopping with a batch
half collected or being handled, and the batch's metrics and trace. What every backend does
with batches is in the conformance suite (mqkit.testing.conformance.batches)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pydantic
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import mqkit
from mqkit.errors import ConfigurationError
from mqkit.middleware import CallNext, Context
from mqkit.testing import TestApp
from mqkit.testing.waiting import drain, until
from tests.support.metrics import by, reader
from tests.support.tracing import ids, named, spans

__all__ = ["reader", "spans"]  # the fixtures


class Order(pydantic.BaseModel):
    id: int


@pytest.fixture
async def broker() -> AsyncIterator[mqkit.Broker]:
    async with mqkit.connect("memory://") as b:
        yield b


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        ({"batch": 0}, "batch must be >= 1"),
        ({"batch": 10, "batch_timeout": -1}, "batch_timeout must be >= 0"),
        ({"batch": 10, "concurrency": 2, "prefetch": 19}, "prefetch=19 cannot fill 2 batch"),
        ({"batch": 10, "rate": "10/s"}, "rate= works on one message at a time"),
        ({"batch": 10, "rate_by": lambda m: m.key, "rate": 1}, "rate= works on one message"),
        ({"batch": 10, "adaptive": mqkit.AdaptiveConcurrency()}, "adaptive= works on one"),
        ({"batch": 10, "middleware": [lambda c, n: n(c)]}, "middleware= works on one"),
    ],
)
def test_a_declaration_that_cannot_batch_is_refused(
    options: dict[str, object], refused: str
) -> None:
    app = mqkit.App()
    with pytest.raises(ValueError, match=refused):
        app.subscriber("orders", **options)  # type: ignore[arg-type]


async def _takes_one(order: Order) -> None: ...


async def _takes_two_bodies(a: list[Order], b: list[Order]) -> None: ...


async def _takes_context(orders: list[Order], ctx: Context) -> None: ...


def _not_async(orders: list[Order]) -> None: ...


@pytest.mark.parametrize(
    ("handler", "refused"),
    [
        (_takes_one, "'order' must be annotated as a list"),
        (_takes_two_bodies, "takes one list of bodies"),
        (_takes_context, "'ctx' must be annotated as a list"),
        (_not_async, "must be an async function"),
    ],
)
def test_a_handler_that_cannot_take_a_batch_is_refused_when_declared(
    handler: object, refused: str
) -> None:
    app = mqkit.App()
    with pytest.raises(TypeError, match=refused):
        app.subscriber("orders", batch=10)(handler)  # type: ignore[type-var]


async def test_a_batch_subscriber_refuses_to_run_under_app_middleware() -> None:
    async def middleware(ctx: Context, call_next: CallNext) -> None:
        await call_next(ctx)

    app = mqkit.App("memory://", middleware=[middleware])

    @app.subscriber("orders", group="bulk", batch=10)
    async def handle(orders: list[Order]) -> None: ...

    with pytest.raises(ConfigurationError, match="orders/bulk take batches"):
        async with app.running():
            pass


async def test_batches_fill_up_to_their_size_and_keep_the_order_given(
    broker: mqkit.Broker,
) -> None:
    app = mqkit.App(broker=broker)
    batches: list[list[int]] = []

    @app.subscriber("orders", group="bulk", batch=64, batch_timeout=5.0)
    async def handle(orders: list[Order]) -> None:
        batches.append([o.id for o in orders])

    await broker.publish_batch([mqkit.Message.create("orders", {"id": i}) for i in range(640)])
    async with app.running():
        await until(lambda: sum(map(len, batches)) == 640)
    # All were waiting: each batch is full at once, long before its 5 s timeout.
    assert [len(b) for b in batches] == [64] * 10
    assert [i for b in batches for i in b] == list(range(640))


async def test_a_batch_is_handed_over_after_its_timeout(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker)
    batches: list[list[int]] = []

    @app.subscriber("orders", group="bulk", batch=100, batch_timeout=0.05)
    async def handle(orders: list[Order]) -> None:
        batches.append([o.id for o in orders])

    async with app.running():
        await broker.publish_batch([mqkit.Message.create("orders", {"id": i}) for i in range(3)])
        await until(lambda: batches == [[0, 1, 2]])


async def test_batch_failed_naming_what_is_not_in_the_batch_retries_all_of_it(
    broker: mqkit.Broker,
) -> None:
    app = mqkit.App(broker=broker, retry=mqkit.RetryPolicy(base_delay=0.01, max_delay=0.01))
    attempts: list[tuple[int, int]] = []

    @app.subscriber("orders", group="bulk", batch=10, batch_timeout=0.2)
    async def handle(orders: list[Order], messages: list[mqkit.Message]) -> None:
        attempts.extend((o.id, m.attempt) for o, m in zip(orders, messages, strict=True))
        if messages[0].attempt == 1:
            raise mqkit.BatchFailed([Order(id=0)])  # equal to the first, but not it

    async with app.running():
        await broker.publish_batch([mqkit.Message.create("orders", {"id": i}) for i in range(4)])
        await until(lambda: len(attempts) == 8)
    assert sorted(attempts) == sorted([(i, a) for i in range(4) for a in (1, 2)])
    assert app.subscribers[0].stats.retried == 4


async def test_batch_failed_with_reject_dead_letters_the_named_at_once(
    broker: mqkit.Broker,
) -> None:
    app = mqkit.App(broker=broker)

    @app.subscriber("orders", group="bulk", batch=10, batch_timeout=0.2)
    async def handle(orders: list[Order]) -> None:
        raise mqkit.BatchFailed([orders[1]], cause=mqkit.Reject("no such customer"))

    async with TestApp(app) as t:  # a fresh broker of its own
        for i in range(3):
            await t.publish("orders", {"id": i})
        await t.settled()
        [dead] = await t.dead_letters("orders", "bulk")
    assert dead.message.decode(Order).id == 1
    assert dead.message.headers["mqkit-error"] == "Reject: no such customer"
    stats = app.subscribers[0].stats
    assert (stats.handled, stats.dead_lettered, stats.retried) == (2, 1, 0)


async def test_stopping_hands_back_a_half_collected_batch_and_finishes_a_handled_one(
    broker: mqkit.Broker,
) -> None:
    app = mqkit.App(broker=broker, shutdown_timeout=10)
    handling = asyncio.Event()
    release = asyncio.Event()
    finished: list[list[int]] = []

    @app.subscriber("orders", group="bulk", batch=5, batch_timeout=60, concurrency=2)
    async def handle(orders: list[Order]) -> None:
        handling.set()
        await release.wait()
        finished.append([o.id for o in orders])

    async with app.running():
        for i in range(8):
            await broker.publish("orders", {"id": i})
        await handling.wait()  # one batch of 5 handled; the other worker holds 3, waiting
        await until(lambda: app.subscribers[0].stats.in_flight == 5)
        stopping = asyncio.get_running_loop().call_later(0.2, release.set)
    stopping.cancel()
    assert finished == [[0, 1, 2, 3, 4]], "the batch being handled ran to its end"
    async with await broker.subscribe("orders", group="bulk") as again:
        back = sorted(d.message.decode(Order).id for d in await drain(again))
    assert back == [5, 6, 7], "the half-collected batch came back"


async def test_a_batch_is_counted_per_message_and_traced_as_one_process_span(
    reader: InMemoryMetricReader, spans: InMemorySpanExporter
) -> None:
    app = mqkit.App()

    @app.subscriber("orders", group="bulk", batch=10, batch_timeout=0.2)
    async def handle(orders: list[Order]) -> None:
        pass

    async with TestApp(app) as t:
        sent = [await t.publish("orders", {"id": i}) for i in range(3)]
        await t.publish("orders", b"not json")
        await t.settled()
    consumed = by(reader, "messaging.client.consumed.messages", "mqkit.outcome")
    assert consumed == {"handled": 3, "rejected": 1}
    [process] = named(spans, "process orders")
    assert process.kind == SpanKind.CONSUMER and process.parent is None
    assert dict(process.attributes or {})["messaging.batch.message_count"] == 3
    linked = {(link.context.trace_id, link.context.span_id) for link in process.links}
    assert linked == {ids(m.headers["traceparent"]) for m in sent}
