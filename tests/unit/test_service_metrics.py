"""mqkit's own metrics beyond the messaging conventions (the SDK's in-memory reader): consumer
lag and rate-limit waits of a running App, the outbox relay's backlog and throughput, the
half-message checker's resolutions and pending gauge, webhook attempts by outcome and
endpoint state, and the receiver's answers by status."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import mqkit
from mqkit import outbox
from mqkit.half import HalfChecker, HalfProducer, Resolution, store_for
from mqkit.outbox import OutboxRelay
from mqkit.outbox.schema import create_all
from mqkit.testing import TestApp
from mqkit.testing.waiting import until
from mqkit.webhooks import SsrfGuard, sign
from mqkit.webhooks.attempts import AttemptLog
from mqkit.webhooks.client import WebhookClient
from mqkit.webhooks.dispatcher import Dispatcher
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry
from mqkit.webhooks.receiver import Receiver, Source
from mqkit.webhooks.schedule import Schedule
from tests.support.metrics import by, points, reader
from tests.support.webhooks import Script, serving

__all__ = ["reader"]  # the fixture


def gauge(reader: InMemoryMetricReader, name: str) -> float | None:
    found = points(reader, name)
    return sum(p.value for p in found) if found else None


async def test_a_running_app_reports_its_lag_and_rate_limit_waits(
    reader: InMemoryMetricReader,
) -> None:
    app = mqkit.App(lag_interval=0.05)
    go = asyncio.Event()

    @app.subscriber("orders", group="billing", rate="200/s")
    async def bill(body: bytes) -> None:
        await go.wait()

    async with TestApp(app) as t:
        for i in range(10):
            await t.publish("orders", f"o{i}")
        # One in the handler, the rest waiting: the lag counts all ten, handled or not.
        await until(lambda: gauge(reader, "mqkit.consumer.lag") == 10)
        assert (gauge(reader, "mqkit.consumer.lag.age") or 0) > 0
        go.set()
        await t.settled()
        await until(lambda: gauge(reader, "mqkit.consumer.lag") == 0)
    [lag] = points(reader, "mqkit.consumer.lag")
    assert dict(lag.attributes) == {
        "messaging.system": "mqkit.memory",
        "messaging.destination.name": "orders",
        "messaging.consumer.group.name": "billing",
    }
    [waited] = points(reader, "mqkit.ratelimit.wait")
    # 10 messages at 200/s: some waited. The turn is taken before the next delivery is,
    # so the idle worker's wait for an 11th may be in too.
    assert waited.count in (10, 11) and waited.sum > 0


async def test_the_relay_reports_its_backlog_and_what_it_relayed(
    reader: InMemoryMetricReader, tmp_path: Path
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(create_all)
    async with AsyncSession(engine) as session, session.begin():
        for i in range(7):
            await outbox.add(session, "orders", f"o{i}")
    async with mqkit.connect(f"memory://relay-{uuid.uuid4().hex}") as broker:
        relay = OutboxRelay(engine, broker, metrics_interval=0.05, poll_interval=0.05)
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))
        await until(lambda: relay.relayed == 7)
        await until(lambda: gauge(reader, "mqkit.outbox.backlog") == 0)
        stop.set()
        await running
    await engine.dispose()
    assert gauge(reader, "mqkit.outbox.relayed") == 7
    assert gauge(reader, "mqkit.outbox.lag") == 0


async def test_the_checker_reports_resolutions_and_what_is_pending(
    reader: InMemoryMetricReader, tmp_path: Path
) -> None:
    store = store_for(f"sqlite:///{tmp_path / 'half.db'}")
    async with mqkit.connect(f"memory://half-{uuid.uuid4().hex}") as broker:
        producer = HalfProducer(broker, store, group="orders-service", check_after=0)
        keep = await producer.prepare("orders", b"keep")
        await producer.prepare("orders", b"drop")
        await producer.prepare("orders", b"later", check_after=3600)

        def check(message: mqkit.Message) -> Resolution:
            return Resolution.COMMIT if message.id == keep.id else Resolution.ROLLBACK

        checker = HalfChecker(
            broker, store, check, group="orders-service", metrics_interval=0.05,
            poll_interval=0.05,
        )  # fmt: skip
        stop = asyncio.Event()
        running = asyncio.create_task(checker.run(stop))
        await until(lambda: checker.stats.committed + checker.stats.rolled_back == 2)
        await until(lambda: gauge(reader, "mqkit.half.pending") == 1)  # the later one
        stop.set()
        await running
    await store.close()
    outcomes = by(reader, "mqkit.half.resolved", "mqkit.half.outcome")
    assert outcomes == {"committed": 1, "rolled_back": 1}


async def test_webhook_attempts_endpoint_states_and_receiver_answers(
    reader: InMemoryMetricReader, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'hooks.db'}"
    registry, attempts = EndpointRegistry(db), AttemptLog(db)
    async with serving() as endpoints, mqkit.connect(f"memory://{uuid.uuid4().hex}") as broker:
        flaky = await registry.add(
            Endpoint(url=endpoints.url("flaky", Script([500, 204])), topics=["orders"])
        )
        await registry.add(Endpoint(url=endpoints.url("off"), topics=["orders"], enabled=False))
        dispatcher = Dispatcher(
            broker, registry, attempts, topics=["orders"],
            client=WebhookClient(SsrfGuard(["127.0.0.1/32"]), timeout=5),
            schedule=Schedule((0, 0.05), jitter=0),
        )  # fmt: skip
        stop = asyncio.Event()
        async with dispatcher:
            running = asyncio.create_task(dispatcher.run(stop))
            await asyncio.wait_for(dispatcher.ready.wait(), 30)
            await broker.publish("orders", b"paid")
            await until(lambda: dispatcher.stats.delivered == 1)
            stop.set()
            await running

        secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        receiver = Receiver(broker, [Source("stripe", [secret], topic="payments")])
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as client:
            good = sign([secret], "msg_1", b"{}")
            assert (await client.post("/stripe", content=b"{}", headers=good)).status_code == 200
            bad = {**good, "webhook-signature": "v1,AAAA"}
            assert (await client.post("/stripe", content=b"{}", headers=bad)).status_code == 401
            assert (await client.post("/nobody", content=b"{}", headers=good)).status_code == 404
    await attempts.close()
    await registry.close()
    tried = by(reader, "mqkit.webhook.attempts", "mqkit.webhook.outcome")
    assert tried == {"retrying": 1, "delivered": 1}
    assert by(reader, "mqkit.webhook.attempts", "mqkit.webhook.endpoint") == {flaky.id: 2}
    states = by(reader, "mqkit.webhook.endpoints", "mqkit.webhook.state")
    assert states == {"healthy": 1, "failing": 0, "disabled": 1}
    answers = by(reader, "mqkit.webhook.received", "http.response.status_code")
    assert answers == {"200": 1, "401": 1, "404": 1}
    sources = by(reader, "mqkit.webhook.received", "mqkit.webhook.source")
    assert sources == {"stripe": 2, "(unknown)": 1}
