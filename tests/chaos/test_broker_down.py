"""Chaos 5: the broker is down for 30 s while a client keeps publishing.

Each publish while it is down raises a typed error within its timeout (`publish_timeout=2s`);
after the broker answers again the first publish succeeds within 10 s; nothing reported as
published is lost. A client closed while the broker is away returns within 5 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import mqkit
from tests.support.chaos import Tally
from tests.support.services import URLS, services
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

DOWN_FOR = 30.0
TIMEOUT = 2.0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("service", ["redis", "rabbitmq", "kafka"])
async def test_publishing_through_a_30s_outage(service: str) -> None:
    url = URLS[service] + f"?publish_timeout={TIMEOUT:g}s"
    topic = f"chaos-down-{uuid.uuid4().hex[:8]}"
    tally = Tally(f"{service} down {DOWN_FOR:g}s while publishing")
    failures: list[float] = []
    errors: set[str] = set()
    up_at: list[float] = []
    first_after_up: list[float] = []
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group="g")).close()  # the group's queue exists
        spare = await mqkit.connect(url).start()  # closed while the broker is away

        async def publish() -> None:
            n = 0
            while not first_after_up or time.monotonic() - first_after_up[0] < 2:
                n += 1
                started = time.monotonic()
                try:
                    sent = await broker.publish(topic, f"m{n}")
                except mqkit.BrokerUnavailableError as exc:
                    failures.append(time.monotonic() - started)
                    errors.add(type(exc).__name__)
                    continue
                tally.sent.add(sent.id)
                if up_at and not first_after_up:
                    first_after_up.append(time.monotonic())
                await asyncio.sleep(0.02)

        async def outage() -> None:
            await asyncio.sleep(1)
            await services("down", service)
            went_down = time.monotonic()
            closing = time.monotonic()
            await spare.close()
            closed_in = time.monotonic() - closing
            assert closed_in < 5.0, f"close() took {closed_in:.1f}s with the broker down"
            await asyncio.sleep(max(0.0, DOWN_FOR - (time.monotonic() - went_down)))
            await services("up", service)
            up_at.append(time.monotonic())

        await asyncio.gather(publish(), outage())
        recovered = first_after_up[0] - up_at[0]
        async with await broker.subscribe(topic, group="g") as sub:

            async def consume() -> None:
                async for delivery in sub:
                    tally.received[delivery.message.id] += 1
                    await delivery.ack()

            consumer = asyncio.create_task(consume())
            try:
                await wait_until(lambda: tally.sent <= tally.received.keys(), 60, "all received")
            finally:
                consumer.cancel()
    tally.report(
        **{
            "failed publishes": len(failures),
            "slowest failure": f"{max(failures):.2f}s",
            "errors": sorted(errors),
            "first publish after up": f"{recovered:.1f}s",
        }
    )
    assert failures, "no publish failed: the broker was not down"
    assert max(failures) <= TIMEOUT + 1.5
    assert errors == {"PublishTimeoutError"}
    assert recovered <= 10.0
    assert tally.lost == 0
