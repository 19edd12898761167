"""The webhook receiver in front of a real broker that goes away: while Redis is stopped a
delivery gets 503 with Retry-After (the sender keeps it), and once Redis is back the same
delivery is enqueued, once."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

import mqkit
from mqkit.webhooks import Secret, sign
from mqkit.webhooks.receiver import Receiver, Source, message_id
from tests.support.services import URLS, services
from tests.support.waiting import drain

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
async def test_503_while_the_broker_is_stopped_then_enqueued_once() -> None:
    topic = f"chaos-hooks-{uuid.uuid4().hex[:8]}"
    secret = Secret.generate()
    body = b'{"event": "paid"}'
    headers = sign([secret], "msg_outage", body)
    url = URLS["redis"] + "?publish_timeout=1s"
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group="g")).close()  # the group exists
        receiver = Receiver(broker, [Source("acme", [secret], topic)])
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            await services("down", "redis")
            try:
                refused = await client.post("/acme", content=body, headers=headers)
            finally:
                await services("up", "redis")
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "5"
            accepted = None
            for _ in range(60):  # the sender's retries, until the client has reconnected
                accepted = await client.post("/acme", content=body, headers=headers)
                if accepted.status_code == 200:
                    break
                await asyncio.sleep(0.5)
            assert accepted is not None and accepted.status_code == 200, accepted
            again = await client.post("/acme", content=body, headers=headers)
            assert again.json()["detail"] == "duplicate, already enqueued"
        async with await broker.subscribe(topic, group="g") as sub:
            got = [d.message for d in await drain(sub, idle=2.0)]
    assert [m.id for m in got] == [message_id("acme", "msg_outage")]
