"""A broker that is down or unreachable: typed errors within the timeout, never a hang.

These run after the restart and interop cases (module order): a Kafka consumer started in
the same test process right after this module stopped and started the broker received
nothing for minutes in two runs, and I have not found why yet.
"""

from __future__ import annotations

import time
import uuid

import pytest

import mqkit
from tests.integration.conftest import URLS, services

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "url",
    [
        "kafka://127.0.0.1:1",
        "amqp://guest:s3cret@127.0.0.1:1/",
        "redis://:s3cret@127.0.0.1:1/0",
        "redis+pubsub://127.0.0.1:1/0",
    ],
)
async def test_unreachable_broker_names_the_url(url: str) -> None:
    with pytest.raises(mqkit.BrokerUnavailableError) as info:
        await mqkit.connect(url).start()
    text = str(info.value)
    assert ":1" in text and "s3cret" not in text


@pytest.mark.parametrize("service", ["redis", "rabbitmq", "kafka"])
async def test_publish_while_down_raises_in_time_and_close_is_quick(service: str) -> None:
    url = URLS[service] + ("&" if "?" in URLS[service] else "?") + "publish_timeout=2s"
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    broker = await mqkit.connect(url).start()
    try:
        sub = await broker.subscribe(topic, group="g")
        await broker.publish(topic, "before")
        # Stopped, not crashed: this case is about the client while the broker is away.
        # Crash recovery (SIGKILL) belongs to the chaos suite.
        await services("down", service)
        started = time.monotonic()
        with pytest.raises(mqkit.BrokerUnavailableError, match="within 2s"):
            await broker.publish(topic, "while down")
        took = time.monotonic() - started
        print(f"\n{service}: publish while down raised after {took:.2f}s")
        assert took < 2 + 1.5
        started = time.monotonic()
        await sub.close()
        await broker.close()
        assert time.monotonic() - started < 5.0
    finally:
        await broker.close()
        await services("up", service)
