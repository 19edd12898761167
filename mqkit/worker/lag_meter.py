"""The consumer lag gauges (`mqkit.consumer.lag`, `mqkit.consumer.lag.age`) of a running
App: each subscription's `broker.lag`, read every `interval` seconds while an SDK
MeterProvider is installed and the backend can tell (its `lag` capability)."""

from __future__ import annotations

import asyncio

from mqkit.broker import Broker
from mqkit.telemetry import metering, polling


def meter_lag(
    broker: Broker, pairs: list[tuple[str, str]], interval: float
) -> asyncio.Task[None] | None:
    meters = metering.instruments()
    if meters is None or not broker.capabilities.lag or not pairs:
        return None
    tells_age = broker.capabilities.lag_age

    async def read() -> None:
        for topic, group in pairs:
            lag = await broker.lag(topic, group)
            attributes: dict[str, str | int] = {
                "messaging.system": broker.SYSTEM,
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": group,
            }
            meters.set("mqkit.consumer.lag", lag.unhandled, attributes)
            if tells_age:  # 0 when nothing waits
                meters.set("mqkit.consumer.lag.age", lag.oldest_age or 0.0, attributes)

    return polling.start(interval, read, "consumer lag")
