"""Producer-side limits: a publish rate, and a bound on publishes in flight.

    publisher = PacedPublisher(broker, LocalLimiter("500/s", burst=100), timeout=2.0)
    await publisher.publish("orders", order)

A publish over the rate waits its turn; one that would wait past `timeout` raises
RateLimitedError at once. `max_in_flight` bounds the messages handed to the broker and not
yet confirmed, so a producer faster than the broker waits (or, past `timeout`, gets
PublishBackpressureError) instead of piling up tasks and memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from mqkit.broker import Broker
from mqkit.errors import PublishBackpressureError
from mqkit.message import Message
from mqkit.ratelimit.limiter import Limiter, acquire


class PacedPublisher:
    def __init__(
        self,
        broker: Broker,
        limiter: Limiter | None = None,
        *,
        key: str = "",
        timeout: float | None = None,
        max_in_flight: int = 1000,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.broker = broker
        self.limiter = limiter
        self.key = key
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._room = asyncio.Condition()

    async def publish(self, topic: str, payload: Any = b"", **options: Any) -> Message:
        """Broker.publish, paced."""
        message = Message.create(topic, payload, **options)
        await self.publish_batch([message])
        return message

    async def publish_batch(
        self, messages: Sequence[Message], *, delay: float | None = None
    ) -> None:
        """Broker.publish_batch, paced: a batch takes one slot of the rate per message."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        # A batch larger than the bound goes alone rather than never.
        count = min(len(messages), self.max_in_flight)
        await self._enter(count, deadline)
        try:
            if self.limiter is not None:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                await acquire(self.limiter, self.key, timeout=left, cost=len(messages))
            await self.broker.publish_batch(messages, delay=delay)
        finally:
            await self._leave(count)

    async def _enter(self, count: int, deadline: float | None) -> None:
        async with self._room:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._room.wait_for(lambda: self.in_flight + count <= self.max_in_flight)
            except TimeoutError:
                raise PublishBackpressureError(
                    f"{self.in_flight} messages in flight (at most {self.max_in_flight}) "
                    f"for {self.timeout:g}s"
                ) from None
            self.in_flight += count

    async def _leave(self, count: int) -> None:
        async with self._room:
            self.in_flight -= count
            self._room.notify_all()
