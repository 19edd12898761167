"""Endpoint health: when the dispatcher disables an endpoint, and the events that say so.

An endpoint failing without a success for `disable_after` (5 days), tripping its circuit
breaker or answering 410 Gone is disabled in the registry, once however many dispatchers
see it; a `webhook.endpoint.disabled` event goes to the events topic, as does
`webhook.attempt.exhausted` when a message's attempts run out.
"""

from __future__ import annotations

import logging
import time

from mqkit.broker import Broker
from mqkit.message import Message
from mqkit.urls import mask
from mqkit.webhooks.client import Response
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry
from mqkit.webhooks.lanes import Breaker, Lane
from mqkit.webhooks.stats import DispatchStats

log = logging.getLogger("mqkit")


class EndpointHealth:
    def __init__(
        self,
        broker: Broker,
        registry: EndpointRegistry,
        stats: DispatchStats,
        *,
        disable_after: float,
        breaker: Breaker,
        events_topic: str,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.stats = stats
        self.disable_after = disable_after
        self.breaker = breaker
        self.events_topic = events_topic

    async def failed(self, lane: Lane, now: float) -> None:
        """After a failed attempt: note when the failing began; disable if it lasted too
        long or the breaker tripped."""
        endpoint = lane.endpoint
        if lane.failing_since is None:
            lane.failing_since = now
            await self.registry.mark_failing(endpoint.id, now)
        if now - lane.failing_since >= self.disable_after:
            days = (now - lane.failing_since) / 86400
            await self.disable(lane, endpoint, f"failing without a success for {days:.1f} days")
        elif lane.breaker_tripped(now):
            b = self.breaker
            await self.disable(
                lane,
                endpoint,
                f"failure rate reached {b.failure_rate:.0%} over {b.window:g}s "
                f"(circuit breaker, at least {b.min_attempts} attempts)",
            )

    async def disable(self, lane: Lane, endpoint: Endpoint, reason: str) -> None:
        lane.endpoint = lane.endpoint.model_copy(update={"enabled": False})
        if await self.registry.disable_if_enabled(endpoint.id, reason):
            shown = mask(endpoint.url)
            log.warning("disabled webhook endpoint %s (%s): %s", endpoint.id, shown, reason)
            self.stats.disabled.append(endpoint.id)
            await self.event(
                "webhook.endpoint.disabled",
                {"endpoint_id": endpoint.id, "url": shown, "reason": reason},
            )

    async def exhausted(
        self, endpoint: Endpoint, message: Message, topic: str, attempts: int, response: Response
    ) -> None:
        self.stats.exhausted += 1
        await self.event(
            "webhook.attempt.exhausted",
            {
                "endpoint_id": endpoint.id,
                "url": mask(endpoint.url),
                "message_id": message.id,
                "topic": topic,
                "attempts": attempts,
                "last_status": response.status,
                "last_error": response.error,
            },
        )

    async def event(self, kind: str, data: dict[str, object]) -> None:
        body = {"type": kind, "timestamp": time.time(), "data": data}
        await self.broker.publish(self.events_topic, body, key=str(data.get("endpoint_id")))
