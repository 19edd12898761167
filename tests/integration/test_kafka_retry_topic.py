"""Kafka: a nack delayed beyond `max_inline_delay` goes through the group's retry topic
(`<topic>.retry.<group>`), so it holds back neither the partition's commit nor the messages
behind it, and comes back no earlier than its delay."""

from __future__ import annotations

import time
import uuid

import pytest

import mqkit
from tests.support.services import URLS
from tests.support.waiting import receive

pytestmark = pytest.mark.slow


@pytest.mark.timeout(120)
async def test_a_long_delay_goes_through_the_retry_topic() -> None:
    topic = f"retry-topic-{uuid.uuid4().hex[:8]}"
    url = URLS["kafka"] + "?max_inline_delay=1s&partitions=1"
    async with mqkit.connect(url) as broker:
        sub = await broker.subscribe(topic, group="g")
        first = await broker.publish(topic, "first", key="k")
        second = await broker.publish(topic, "second", key="k")  # same key, same partition
        (delivery,) = await receive(sub, 1, ack=False)
        assert delivery.message.id == first.id
        nacked_at = time.monotonic()
        await delivery.nack(delay=3.0)  # over max_inline_delay: to the retry topic
        # Held inline, the same key's next message would wait for the first; here it does not.
        (behind,) = await receive(sub, 1)
        assert behind.message.id == second.id and time.monotonic() - nacked_at < 3.0
        (back,) = await receive(sub, 1, timeout=30)
        assert back.message.id == first.id and back.message.body == b"first"
        assert time.monotonic() - nacked_at >= 3.0  # never early
        assert back.message.attempt == 2
        await sub.close()
        retry_topic = broker.retry_topic(topic, "g")  # type: ignore[attr-defined]
        async with await broker.subscribe(retry_topic, group="look", start="earliest") as raw:
            (copy,) = await receive(raw, 1, timeout=30)
        assert retry_topic == f"{topic}.retry.g" and copy.message.id == first.id
