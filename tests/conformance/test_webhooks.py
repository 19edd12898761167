"""Webhooks on every backend: the dispatcher's retries are delayed messages on the broker under
test, and the receiver publishes to it. The HTTP endpoints are real, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx

import mqkit
from mqkit.testing.conformance.fixtures import require
from mqkit.webhooks import SsrfGuard, sign
from mqkit.webhooks.attempts import AttemptLog
from mqkit.webhooks.client import WebhookClient
from mqkit.webhooks.dispatcher import Dispatcher
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry
from mqkit.webhooks.receiver import Receiver, Source, message_id
from mqkit.webhooks.schedule import Schedule
from tests.support.waiting import drain
from tests.support.webhooks import Script, serving

N = 200


async def test_fan_out_with_retries_delivers_everything_once(
    broker: mqkit.Broker, topic: str, tmp_path: Path
) -> None:
    require(broker, "consumer_groups", "delayed_delivery")
    db = f"sqlite:///{tmp_path / 'hooks.db'}"
    registry, log = EndpointRegistry(db), AttemptLog(db)
    async with serving() as endpoints:
        await registry.add(Endpoint(url=endpoints.url("steady"), topics=[topic]))
        # The first attempt of every message fails here: each one takes a trip through the
        # broker under test as a delayed retry.
        flaky = Script([500, 204], per_id=True)
        await registry.add(Endpoint(url=endpoints.url("flaky", flaky), topics=[topic]))
        dispatcher = Dispatcher(
            broker,
            registry,
            log,
            topics=[topic],
            group=f"hooks-{uuid.uuid4().hex[:8]}",
            retry_topic=f"{topic}-retry",
            events_topic=f"{topic}-events",
            client=WebhookClient(SsrfGuard(["127.0.0.1/32"]), timeout=5),
            schedule=Schedule((0, 0.5), jitter=0),
        )
        stop = asyncio.Event()
        async with dispatcher:
            task = asyncio.create_task(dispatcher.run(stop))
            # Every subscription in place: RabbitMQ has bound its queues, and on Kafka the
            # group's rebalance for the second is over (one during the run redelivers what
            # was in flight: duplicates at the steady endpoint, seen in CI).
            await asyncio.wait_for(dispatcher.ready.wait(), 60)
            sent = [mqkit.Message.create(topic, {"n": i}) for i in range(N)]
            await broker.publish_batch(sent)
            deadline = time.monotonic() + 60
            while dispatcher.stats.delivered < 2 * N and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # anything extra would arrive by now
            stop.set()
            await task
        steady = [r.headers["webhook-id"] for r in endpoints["steady"].received]
        attempts = [r.headers["webhook-id"] for r in flaky.received]
    await log.close()
    await registry.close()
    ids = sorted(m.id for m in sent)
    assert sorted(steady) == ids, "the steady endpoint lost or got duplicates"
    assert sorted(attempts) == sorted([*ids, *ids]), "not exactly two attempts per message"
    assert dispatcher.stats.delivered == 2 * N and dispatcher.stats.failed_attempts == N


async def test_the_receiver_enqueues_on_this_broker(broker: mqkit.Broker, topic: str) -> None:
    require(broker, "consumer_groups")
    from mqkit.webhooks import Secret

    secret = Secret.generate()
    sub = await broker.subscribe(topic, group=f"r-{uuid.uuid4().hex[:8]}")
    receiver = Receiver(broker, [Source("acme", [secret], topic)])
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        bodies = [f'{{"n": {i}}}'.encode() for i in range(50)]
        headers = [sign([secret], f"msg_{uuid.uuid4().hex}", b) for b in bodies]
        answers = await asyncio.gather(
            *(
                client.post("/acme", content=b, headers=h)
                for b, h in zip(bodies, headers, strict=True)
            ),
            *(
                client.post("/acme", content=b, headers=h)
                for b, h in zip(bodies, headers, strict=True)
            ),
        )
    assert {a.status_code for a in answers} == {200}
    got = await drain(sub, idle=1.0)
    for delivery in got:
        await delivery.ack()
    await sub.close()
    assert sorted(d.message.headers["webhook-id"] for d in got) == sorted(
        h["webhook-id"] for h in headers
    )
    assert sorted(d.message.id for d in got) == sorted(
        message_id("acme", h["webhook-id"]) for h in headers
    )
