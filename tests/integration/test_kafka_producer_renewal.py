"""The Kafka adapter replaces a producer the broker stopped accepting, even when the
publish that noticed it gives up half-way.

After a broker restart an idempotent producer can be refused for good (OutOfOrderSequence,
UnknownProducerId) and is replaced. A CI run once hung because the publish that started the
replacement hit its deadline during it: the cancelled replacement left a stopped producer in
place, and every later publish failed at once. Restarting Kafka does not produce the refusal
reliably, so it is injected here; the broker, producers and records are real.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import mqkit_kafka.broker
import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

import mqkit
from mqkit.errors import PublishTimeoutError
from tests.support.services import URLS

pytestmark = pytest.mark.slow


async def test_a_publish_timing_out_mid_renewal_leaves_a_working_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = f"renewal-{uuid.uuid4().hex[:8]}"
    async with mqkit.connect(URLS["kafka"] + "?publish_timeout=1s") as broker:
        sent = [(await broker.publish(topic, "before")).id]
        refused: list[object] = []
        produce = mqkit_kafka.broker.produce

        async def refuse_once(producer: Any, records: Any) -> None:
            if not refused:
                refused.append(producer)
                raise OutOfOrderSequenceNumber("injected: the broker forgot this producer")
            await produce(producer, records)

        new_producer = broker._new_producer  # type: ignore[attr-defined]

        def slow_to_start() -> Any:
            producer = new_producer()
            start = producer.start

            async def start_late() -> None:
                await asyncio.sleep(1.5)  # past the publish's 1 s deadline
                await start()

            producer.start = start_late
            return producer

        monkeypatch.setattr(mqkit_kafka.broker, "produce", refuse_once)
        monkeypatch.setattr(broker, "_new_producer", slow_to_start)
        with pytest.raises(PublishTimeoutError):
            await broker.publish(topic, "during the renewal")

        # The replacement goes on without the publish that asked for it; then publishing works.
        started = time.monotonic()
        while broker._producer is refused[0]:  # type: ignore[attr-defined]
            assert time.monotonic() - started < 10, "the producer was not replaced"
            await asyncio.sleep(0.1)
        sent.append((await broker.publish(topic, "after")).id)

        received: list[str] = []
        async with await broker.subscribe(topic, group="g") as subscription:
            async for delivery in subscription:
                received.append(delivery.message.id)
                await delivery.ack()
                if set(sent) <= set(received):
                    break
    assert set(sent) <= set(received)
