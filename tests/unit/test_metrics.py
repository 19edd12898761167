"""Metrics after OpenTelemetry's messaging conventions (mqkit.telemetry.instruments), on
`memory://` with the SDK's in-memory metric reader: what was sent, consumed (every attempt,
by outcome), how long processing took, retries, dead letters and handlers in flight; and
nothing recorded, no instrument made, without a provider."""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import mqkit
from mqkit.backends.memory import MemoryBroker
from mqkit.errors import BrokerUnavailableError
from mqkit.message import Message
from mqkit.retry import RetryPolicy
from mqkit.telemetry import metering
from mqkit.testing import TestApp
from tests.support.metrics import by, points, reader

__all__ = ["reader"]  # the fixture


class Order(pydantic.BaseModel):
    id: int


def test_without_a_provider_there_are_no_instruments() -> None:
    assert metering.instruments() is None


async def test_sent_consumed_retried_dead_lettered_and_timed(
    reader: InMemoryMetricReader,
) -> None:
    app = mqkit.App(retry=RetryPolicy(max_attempts=3, base_delay=0.01, jitter=False))
    failed: set[int] = set()

    @app.subscriber("orders", group="billing")
    async def bill(order: Order) -> None:
        if order.id == 2 and order.id not in failed:
            failed.add(order.id)
            raise ValueError("once")

    async with TestApp(app) as t:
        await t.publish("orders", {"id": 1})
        await t.publish("orders", {"id": 2})
        await t.publish("orders", b"not json")
        await t.settled()
        assert len(await t.dead_letters("orders", "billing")) == 1

    sent = by(reader, "messaging.client.sent.messages", "messaging.destination.name")
    assert sent == {"orders": 3, "orders.dlq": 1}
    assert {
        p.attributes["messaging.system"] for p in points(reader, "messaging.client.sent.messages")
    } == {"mqkit.memory"}
    consumed = by(reader, "messaging.client.consumed.messages", "mqkit.outcome")
    assert consumed == {"handled": 2, "retried": 1, "rejected": 1}
    errors = by(reader, "messaging.client.consumed.messages", "error.type")
    assert errors == {"None": 2, "ValueError": 1, "DecodeError": 1}
    [attempt_point] = points(reader, "mqkit.retries")
    assert attempt_point.value == 1
    assert dict(attempt_point.attributes) == {
        "messaging.system": "mqkit.memory",
        "messaging.operation.name": "process",
        "messaging.destination.name": "orders",
        "messaging.consumer.group.name": "billing",
    }
    assert by(reader, "mqkit.dead_letters", "mqkit.reason") == {"rejected": 1}
    assert sum(p.count for p in points(reader, "messaging.process.duration")) == 4
    assert sum(p.count for p in points(reader, "messaging.client.operation.duration")) == 4
    assert sum(p.value for p in points(reader, "mqkit.handlers.in_flight")) == 0


class Unreachable(MemoryBroker):
    async def _send(self, messages: Sequence[Message], delay: float | None) -> None:
        raise BrokerUnavailableError("gone")


async def test_a_failed_publish_is_counted_with_its_error(reader: InMemoryMetricReader) -> None:
    async with Unreachable("memory://") as broker:
        with pytest.raises(BrokerUnavailableError):
            await broker.publish("orders", b"x")
    [point] = points(reader, "messaging.client.sent.messages")
    assert point.value == 1 and point.attributes["error.type"] == "BrokerUnavailableError"
    [took] = points(reader, "messaging.client.operation.duration")
    assert took.count == 1 and took.attributes["error.type"] == "BrokerUnavailableError"
