"""One trace through every hop that stores a message on the way (the SDK's in-memory
exporter): the outbox (the transaction's context kept in the row, on SQLite and PostgreSQL),
half messages (prepare, commit, the checker's check-back), and webhooks (the receiver
continuing the sender's traceparent, the worker, the dispatcher's HTTP attempt, and the
endpoint receiving a traceparent of the same trace)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession

import mqkit
from mqkit import http_server, outbox
from mqkit.half import HalfChecker, HalfProducer, Resolution, store_for
from mqkit.outbox import OutboxRelay
from mqkit.testing import TestApp
from mqkit.testing.waiting import until
from mqkit.webhooks import SsrfGuard, sign
from mqkit.webhooks.attempts import AttemptLog
from mqkit.webhooks.client import WebhookClient
from mqkit.webhooks.dispatcher import Dispatcher
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry
from mqkit.webhooks.receiver import Receiver, Source
from tests.support.databases import DATABASES, database
from tests.support.tracing import ids, ids_of, is_child, links_to, named, spans
from tests.support.webhooks import serving

__all__ = ["spans"]  # the fixture


def tracer() -> trace.Tracer:
    """The application's own tracer (not one made at import: each test installs a provider)."""
    return trace.get_tracer("tests")


@asynccontextmanager
async def billing(url: str) -> AsyncIterator[TestApp]:
    """A worker on `url` that handles `orders`."""
    app = mqkit.App()

    @app.subscriber("orders", group="billing")
    async def bill(body: bytes) -> None:
        pass

    async with TestApp(app, url) as t:
        yield t


def one(exporter: InMemorySpanExporter, name: str) -> Callable[[], bool]:
    return lambda: len(named(exporter, name)) == 1


@pytest.mark.parametrize("db_name", DATABASES)
async def test_the_relay_keeps_the_trace_of_the_transaction(
    spans: InMemorySpanExporter, db_name: str, tmp_path: Path
) -> None:
    url = f"memory://outbox-{uuid.uuid4().hex}"
    async with database(db_name, tmp_path) as db, billing(url) as worker:
        with tracer().start_as_current_span("place order"):
            async with AsyncSession(db.engine) as session, session.begin():
                added = await outbox.add(session, "orders", b"x", key="c1")
        relay = OutboxRelay(db.engine, worker.broker)
        assert await relay.drain() == 1
        await until(one(spans, "process orders"))
    [place] = named(spans, "place order")
    [create] = named(spans, "create orders")
    [send] = named(spans, "send orders")
    [process] = named(spans, "process orders")
    assert create.kind == SpanKind.PRODUCER and is_child(create, place)
    assert create.attributes and create.attributes["mqkit.stored_in"] == "outbox"
    assert ids(added.headers["traceparent"]) == ids_of(create)
    # The relay's send is its own trace, linked to the row's creation; the consumer
    # continues the transaction's.
    assert send.parent is None and links_to(send, create)
    assert is_child(process, create)


async def test_a_half_message_commit_is_in_the_trace_of_its_prepare(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    url = f"memory://half-{uuid.uuid4().hex}"
    store = store_for(f"sqlite:///{tmp_path / 'half.db'}")
    async with billing(url) as worker:
        producer = HalfProducer(worker.broker, store, group="orders-service")
        with tracer().start_as_current_span("place order"):
            async with producer.transaction("orders", b"x"):
                pass
        await until(one(spans, "process orders"))
    await store.close()
    [place] = named(spans, "place order")
    [create] = named(spans, "create orders")
    [commit] = named(spans, "commit orders")
    [send] = named(spans, "send orders")
    [process] = named(spans, "process orders")
    assert is_child(create, place) and is_child(commit, place) and links_to(commit, create)
    assert create.attributes and create.attributes["mqkit.half.group"] == "orders-service"
    assert is_child(send, commit) and links_to(send, create)
    assert is_child(process, create)


async def test_the_checkers_check_back_joins_the_trace_of_the_prepare(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    url = f"memory://half-{uuid.uuid4().hex}"
    store = store_for(f"sqlite:///{tmp_path / 'half.db'}")
    async with billing(url) as worker:
        producer = HalfProducer(worker.broker, store, group="orders-service", check_after=0)
        with tracer().start_as_current_span("place order"):
            await producer.prepare("orders", b"x")  # and the producer dies
        checker = HalfChecker(
            worker.broker, store, lambda m: Resolution.COMMIT, group="orders-service"
        )
        assert await checker.check_once() == 1
        assert checker.stats.committed == 1
        await until(one(spans, "process orders"))
    await store.close()
    [create] = named(spans, "create orders")
    [check] = named(spans, "check orders")
    [send] = named(spans, "send orders")
    [process] = named(spans, "process orders")
    assert is_child(check, create)
    assert check.attributes and check.attributes["mqkit.half.outcome"] == "committed"
    assert is_child(send, check) and links_to(send, create)
    assert is_child(process, create)


async def test_webhook_in_to_webhook_out_is_one_trace(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """A sender's POST (with its traceparent) → the receiver → `payments` → a worker that
    publishes `orders.paid` → the dispatcher → the endpoint, which gets a traceparent of the
    same trace. The closing note of issue 15 prints this trace."""
    url = f"memory://hooks-{uuid.uuid4().hex}"
    db = f"sqlite:///{tmp_path / 'hooks.db'}"
    registry, attempts = EndpointRegistry(db), AttemptLog(db)
    app = mqkit.App()

    @app.subscriber("payments", group="orders")
    async def paid(body: bytes) -> None:
        await app.broker.publish("orders.paid", body)

    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    receiver_broker = mqkit.connect(url)
    receiver = Receiver(receiver_broker, [Source("stripe", [secret], topic="payments")])
    async with (
        serving() as endpoints,
        TestApp(app, url) as worker,
        receiver_broker,
        http_server.serving(receiver, "127.0.0.1", 0) as server,
    ):
        [socket] = server.servers[0].sockets
        receiver_url = f"http://127.0.0.1:{socket.getsockname()[1]}/stripe"
        await registry.add(Endpoint(url=endpoints.url("crm"), topics=["orders.paid"]))
        dispatcher = Dispatcher(
            worker.broker,
            registry,
            attempts,
            topics=["orders.paid"],
            client=WebhookClient(SsrfGuard(["127.0.0.1/32"]), timeout=5),
        )
        stop = asyncio.Event()
        async with dispatcher:
            task = asyncio.create_task(dispatcher.run(stop))
            await asyncio.wait_for(dispatcher.ready.wait(), 30)
            body = json.dumps({"type": "payment.succeeded"}).encode()
            with tracer().start_as_current_span("sender", kind=SpanKind.CLIENT) as sender:
                headers = sign([secret], "msg_1", body)
                headers["traceparent"] = (
                    f"00-{sender.get_span_context().trace_id:032x}-"
                    f"{sender.get_span_context().span_id:016x}-01"
                )
                async with httpx.AsyncClient() as client:
                    answer = await client.post(receiver_url, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            await until(lambda: len(endpoints["crm"].received) == 1)
            await until(one(spans, "process orders.paid"))
            stop.set()
            await task
    await attempts.close()
    await registry.close()
    [sender_span] = named(spans, "sender")
    [server] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    [send_payment] = named(spans, "send payments")
    [process_payment] = named(spans, "process payments")
    [send_paid] = named(spans, "send orders.paid")
    [dispatch] = named(spans, "process orders.paid")
    clients = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    [post] = [s for s in clients if s is not sender_span]
    chain = [sender_span, server, send_payment, process_payment, send_paid, dispatch, post]
    for parent, child in itertools.pairwise(chain):
        assert is_child(child, parent), f"{child.name} is not a child of {parent.name}"
    assert dispatch.attributes and dispatch.attributes["messaging.consumer.group.name"] == (
        "mqkit-webhooks"
    )
    assert post.attributes and post.attributes.get("http.status_code", 204) == 204
    [got] = endpoints["crm"].received
    assert ids(got.headers["traceparent"]) == ids_of(post)
