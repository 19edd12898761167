"""The receiver app, called in-process through httpx's ASGI transport, over the memory broker.

Deliveries are signed by the independent `standardwebhooks` package where the case allows,
so these tests also check that the receiver accepts what another implementation sends.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

import mqkit
from mqkit.idempotency import idempotent
from mqkit.idempotency.memory import MemoryStore
from mqkit.webhooks import Secret, sign
from mqkit.webhooks.receiver import Receiver, Source, message_id
from tests.support.waiting import until

SECRET = Secret.generate()
OTHER = Secret.generate()


class Rig:
    def __init__(self, broker: mqkit.Broker, **options: Any) -> None:
        self.topic = f"hooks-{uuid.uuid4().hex[:8]}"
        self.broker = broker
        self.receiver = Receiver(broker, [Source("acme", [SECRET], self.topic)], **options)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.receiver), base_url="http://receiver"
        )

    async def post(
        self, body: bytes, headers: dict[str, str], path: str = "/acme"
    ) -> httpx.Response:
        return await self.client.post(path, content=body, headers=headers)

    async def enqueued(self, wait: float = 0.3) -> list[mqkit.Message]:
        got: list[mqkit.Message] = []
        async with await self.broker.subscribe(self.topic, start="earliest") as sub:
            while True:
                try:
                    delivery = await asyncio.wait_for(anext(sub), wait)
                except TimeoutError:
                    return got
                got.append(delivery.message)
                await delivery.ack()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with mqkit.connect("memory://") as broker:
        r = Rig(broker)
        yield r
        await r.client.aclose()


def signed(body: bytes, msg_id: str | None = None, *, at: float | None = None) -> dict[str, str]:
    """Headers from the standardwebhooks package, not from mqkit."""
    when = time.time() if at is None else at
    from datetime import UTC, datetime

    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = datetime.fromtimestamp(when, tz=UTC)
    signature = Webhook(SECRET.text).sign(msg_id, stamp, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when)),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def test_a_valid_delivery_is_enqueued_with_its_id(rig: Rig) -> None:
    body = b'{"event": "paid", "amount": 12}'
    headers = signed(body, "msg_abc")
    r = await rig.post(body, headers)
    assert r.status_code == 200 and r.json()["webhook_id"] == "msg_abc"
    [message] = await rig.enqueued()
    assert r.json()["message_id"] == message.id == message_id("acme", "msg_abc")
    assert (message.body, message.content_type) == (body, "application/json")
    assert message.headers["webhook-id"] == "msg_abc"
    assert message.headers["mqkit-webhook-source"] == "acme"


BODY = b'{"event": "paid"}'


def _flip(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


BAD: list[tuple[str, Any]] = [
    ("missing headers", lambda h: {}),
    ("no signature", lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}),
    ("no timestamp", lambda h: {k: v for k, v in h.items() if k != "webhook-timestamp"}),
    ("no id", lambda h: {k: v for k, v in h.items() if k != "webhook-id"}),
    ("wrong secret", lambda h: {**h, **sign([OTHER], h["webhook-id"], BODY)}),
    ("id changed", lambda h: {**h, "webhook-id": h["webhook-id"] + "x"}),
    ("timestamp +301 s", lambda h: _at(h, +301)),
    ("timestamp -301 s", lambda h: _at(h, -301)),
    ("non-integer timestamp", lambda h: {**h, "webhook-timestamp": h["webhook-timestamp"] + ".5"}),
    ("garbage", lambda h: {**h, "webhook-signature": "garbage"}),
    ("v1, with nothing", lambda h: {**h, "webhook-signature": "v1,"}),
    ("signature changed", lambda h: {**h, "webhook-signature": _flip(h["webhook-signature"])}),
    ("10 KB header", lambda h: {**h, "webhook-signature": "v1," + "A" * 10240}),
    ("v2 only", lambda h: {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}),
]


def _at(headers: dict[str, str], shift: int) -> dict[str, str]:
    when = time.time() + shift
    return signed(BODY, headers["webhook-id"], at=when)


@pytest.mark.parametrize("case", [c for c, _ in BAD], ids=[c for c, _ in BAD])
async def test_bad_deliveries_get_401_with_the_reason(rig: Rig, case: str) -> None:
    change = dict(BAD)[case]
    r = await rig.post(BODY, change(signed(BODY)))
    assert r.status_code == 401, r.text
    assert r.json()["detail"]
    assert await rig.enqueued(0.1) == []


async def test_one_byte_changed_in_the_body(rig: Rig) -> None:
    headers = signed(BODY)
    r = await rig.post(BODY.replace(b"paid", b"paie"), headers)
    assert r.status_code == 401


async def test_timestamps_inside_the_tolerance_pass(rig: Rig) -> None:
    for shift in (-299, 299):
        r = await rig.post(BODY, signed(BODY, at=time.time() + shift))
        assert r.status_code == 200
    assert len(await rig.enqueued()) == 2


async def test_oversized_bodies_get_413(rig: Rig) -> None:
    small = Rig(rig.broker, max_body=1000)
    body = b"x" * 1001
    r = await small.post(body, signed(body))
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked, read and cut
        for _ in range(100):
            yield b"y" * 100

    r = await small.client.post("/acme", content=chunks(), headers=signed(b"ignored"))
    assert r.status_code == 413
    assert await small.enqueued(0.1) == []
    await small.client.aclose()


async def test_100_concurrent_replays_are_enqueued_once(rig: Rig) -> None:
    headers = signed(BODY, "msg_once")
    answers = await asyncio.gather(*(rig.post(BODY, headers) for _ in range(100)))
    assert {a.status_code for a in answers} == {200}
    assert sum(a.json()["detail"] == "enqueued" for a in answers) == 1
    assert [m.id for m in await rig.enqueued()] == [message_id("acme", "msg_once")]


async def test_unknown_source_and_wrong_method(rig: Rig) -> None:
    assert (await rig.post(BODY, signed(BODY), path="/nobody")).status_code == 404
    assert (await rig.client.get("/acme")).status_code == 405


async def test_a_broker_that_cannot_take_it_gets_503_and_the_retry_is_enqueued(rig: Rig) -> None:
    headers = signed(BODY, "msg_retry")
    down = await mqkit.connect("memory://").start()
    await down.close()
    rig.receiver.broker = down
    r = await rig.post(BODY, headers)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    rig.receiver.broker = rig.broker  # back up: the sender's retry goes through, once
    assert (await rig.post(BODY, headers)).status_code == 200
    assert [m.id for m in await rig.enqueued()] == [message_id("acme", "msg_retry")]


async def test_overload_gets_429_with_retry_after_and_drops_nothing_acknowledged(
    rig: Rig,
) -> None:
    slow = Rig(rig.broker, max_pending=5)
    gate = asyncio.Event()
    publish = rig.broker.publish

    async def held(*args: Any, **kwargs: Any) -> mqkit.Message:
        await gate.wait()
        return await publish(*args, **kwargs)

    slow.broker.publish = held  # type: ignore[method-assign]
    bodies = [f'{{"n": {i}}}'.encode() for i in range(20)]
    posts = [asyncio.create_task(slow.post(b, signed(b))) for b in bodies]
    await asyncio.sleep(0.3)
    gate.set()
    answers = await asyncio.gather(*posts)
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 5 and codes.count(429) == 15
    assert {a.headers["Retry-After"] for a in answers if a.status_code == 429} == {"1"}
    slow.broker.publish = publish  # type: ignore[method-assign]
    accepted = {bodies[i] for i, a in enumerate(answers) if a.status_code == 200}
    assert {m.body for m in await slow.enqueued()} == accepted
    await slow.client.aclose()


async def test_mqkit_signatures_are_accepted_too_and_rotation_keeps_working(
    rig: Rig,
) -> None:
    new = Secret.generate()
    rotating = Rig(rig.broker)
    rotating.receiver = Receiver(rig.broker, [Source("acme", [new, SECRET], rotating.topic)])
    rotating.client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=rotating.receiver), base_url="http://receiver"
    )
    for secrets in ([SECRET], [new], [new, SECRET]):
        headers = sign(secrets, f"msg_{uuid.uuid4().hex}", BODY)
        assert (await rotating.post(BODY, headers)).status_code == 200
    assert len(await rotating.enqueued()) == 3
    await rotating.client.aclose()


async def test_a_sender_over_its_rate_gets_429_with_the_limiters_retry_after(
    rig: Rig,
) -> None:
    from mqkit.ratelimit import LocalLimiter

    limited = Rig(rig.broker, limiter=LocalLimiter("1/2s", burst=3))
    bodies = [f'{{"n": {i}}}'.encode() for i in range(5)]
    answers = [await limited.post(b, signed(b)) for b in bodies]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert {a.headers["Retry-After"] for a in answers[3:]} == {"2"}
    assert {m.body for m in await limited.enqueued()} == set(bodies[:3])
    await limited.client.aclose()


async def test_the_same_webhook_id_from_two_sources_is_two_messages_both_handled() -> None:
    """One sender reusing another's webhook-id must not suppress the other's message; a
    sender's own retry of it is still one message."""
    topic = f"hooks-{uuid.uuid4().hex[:8]}"
    acme, globex = Secret.generate(), Secret.generate()
    async with mqkit.connect("memory://") as broker:
        receiver = Receiver(
            broker, [Source("acme", [acme], topic), Source("globex", [globex], topic)]
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=receiver), base_url="http://receiver"
        )
        for source, secret in (("acme", acme), ("globex", globex), ("acme", acme)):
            headers = sign([secret], "msg_1", BODY)  # the third: acme retrying, freshly signed
            r = await client.post(f"/{source}", content=BODY, headers=headers)
            assert r.status_code == 200, r.text
        await client.aclose()

        handled: list[tuple[str, str]] = []
        app = mqkit.App(broker=broker, middleware=[idempotent(MemoryStore())])

        @app.subscriber(topic, group="effects")
        async def effect(message: mqkit.Message) -> None:
            handled.append((message.headers["mqkit-webhook-source"], message.headers["webhook-id"]))

        async with app.running():
            await until(lambda: len(handled) == 2)
            await asyncio.sleep(0.2)  # a third, wrongly enqueued copy would arrive by now
        stats = app.subscribers[0].stats
    assert sorted(handled) == [("acme", "msg_1"), ("globex", "msg_1")]
    assert (stats.handled, stats.duplicates) == (2, 0)


async def test_two_receivers_share_their_dedup_through_redis() -> None:
    """`--dedup redis://`: the same delivery posted to two receivers (two processes behind
    a load balancer) is enqueued once."""
    import os

    from mqkit_redis.idempotency import RedisStore

    redis_url = os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    topic = f"hooks-{uuid.uuid4().hex[:8]}"
    prefix = f"mqkit:test-webhook-ids:{uuid.uuid4().hex[:8]}:"
    async with mqkit.connect("memory://") as broker:
        stores = [RedisStore(redis_url, prefix=prefix) for _ in range(2)]
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(
                    app=Receiver(broker, [Source("acme", [SECRET], topic)], dedup=store)
                ),
                base_url="http://receiver",
            )
            for store in stores
        ]
        deliveries = [(f'{{"n": {i}}}'.encode(), f"msg_{uuid.uuid4().hex}") for i in range(20)]
        answers = await asyncio.gather(
            *(
                client.post("/acme", content=body, headers=signed(body, msg_id))
                for body, msg_id in deliveries
                for client in clients
            )
        )
        for client in clients:
            await client.aclose()
        for store in stores:
            await store.close()
        rig = Rig(broker)
        rig.topic = topic
        got = await rig.enqueued()
    assert {a.status_code for a in answers} == {200}
    assert sum(a.json()["detail"] == "enqueued" for a in answers) == 20
    assert sorted(m.headers["webhook-id"] for m in got) == sorted(i for _, i in deliveries)
