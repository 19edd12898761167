"""Conformance case 13 on the real brokers: 10,000 messages while the broker is restarted
twice. The clients are never re-created by the test; nothing reported as published is lost."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

import pytest

import mqkit
from tests.integration.conftest import URLS, services

pytestmark = pytest.mark.slow

TOTAL = 10_000
BATCH = 50


@pytest.mark.timeout(400)  # two restarts of a JVM broker on a loaded 2-core machine
@pytest.mark.parametrize("service", ["kafka", "rabbitmq", "redis"])
async def test_restarts_lose_nothing(service: str) -> None:
    topic = f"reconnect-{uuid.uuid4().hex[:10]}"
    async with mqkit.connect(URLS[service]) as broker:
        sub = await broker.subscribe(topic, group="survivors", prefetch=200)
        confirmed: list[str] = []
        received: collections.Counter[str] = collections.Counter()
        failures = 0

        async def publish() -> None:
            nonlocal failures
            for i in range(0, TOTAL, BATCH):
                batch = [mqkit.Message.create(topic, f"m{i + j}") for j in range(BATCH)]
                while True:
                    try:
                        await broker.publish_batch(batch)
                        break
                    except mqkit.BrokerUnavailableError:
                        failures += 1  # down: the same batch again (same ids) until it lands
                        await asyncio.sleep(0.5)
                confirmed.extend(m.id for m in batch)
                await asyncio.sleep(0.005)

        async def consume() -> None:
            async for delivery in sub:
                received[delivery.message.id] += 1
                await delivery.ack()

        async def chaos() -> None:
            for fraction in (1 / 3, 1 / 2):
                while len(confirmed) < TOTAL * fraction:
                    await asyncio.sleep(0.05)
                await services("restart", service)

        consumer = asyncio.create_task(consume())
        started = time.monotonic()
        await asyncio.gather(publish(), chaos())
        sent = set(confirmed)
        try:
            async with asyncio.timeout(180):
                while not sent <= received.keys():
                    await asyncio.sleep(0.2)
        except TimeoutError:
            pytest.fail(
                f"{service}: {len(sent - received.keys())} of {len(sent)} confirmed messages "
                "not received 180 s after the last publish"
            )
        finally:
            consumer.cancel()
            await sub.close()
        lost = len(sent - received.keys())
        duplicated = sum(c - 1 for c in received.values() if c > 1)
        print(
            f"\n{service}: sent {len(sent)}, received {len(received)} distinct, lost {lost}, "
            f"duplicated {duplicated}, publish retries {failures}, "
            f"{time.monotonic() - started:.1f}s with 2 restarts"
        )
        assert lost == 0
