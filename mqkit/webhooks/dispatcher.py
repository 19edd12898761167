"""The dispatcher: consumes topics as a consumer group and POSTs each message to every
enabled endpoint subscribed to its topic, signed per the Standard Webhooks spec.

    async with Dispatcher(broker, registry, log, topics=["orders"]) as dispatcher:
        await dispatcher.run(stop)

Run more dispatchers (same group) to scale out. A message's first attempts run as soon as it
arrives; the message is acked once each endpoint has it or has a retry scheduled on the
broker (a delayed message on `retry_topic`), so a crash loses nothing and repeats at most
the attempts in flight, with the same `webhook-id`, which receivers deduplicate on.

Outcomes: 2xx delivered; 410 disables the endpoint; 429/502/503/504 throttle the endpoint
for the Retry-After they send (the next attempt is never earlier); an address the SSRF guard
refuses is recorded as `refused` and not retried (it will not change by itself, and the
endpoint's failure accounting still counts it); anything else, a 3xx (never followed) or a
timeout, is a failure retried on the schedule.
After the last attempt the message is recorded as failed and a `webhook.attempt.exhausted`
event goes to `events_topic`. An endpoint failing without a success for `disable_after`
(default 5 days), or tripping the failure-rate breaker, is disabled (event
`webhook.endpoint.disabled`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from mqkit.broker import Broker, Delivery
from mqkit.message import Message
from mqkit.telemetry import metering, tracing
from mqkit.webhooks.attempts import Attempt, AttemptLog, excerpt
from mqkit.webhooks.client import Response, WebhookClient
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry
from mqkit.webhooks.health import EndpointHealth
from mqkit.webhooks.lanes import Breaker, Lane
from mqkit.webhooks.schedule import Schedule, retry_after
from mqkit.webhooks.signing import sign
from mqkit.webhooks.stats import DispatchStats
from mqkit.wire import WEBHOOK_ATTEMPT, WEBHOOK_ENDPOINT, WEBHOOK_TOPIC
from mqkit.worker.feed import Feed

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger("mqkit.webhooks")

GROUP = "mqkit-webhooks"
RETRY_TOPIC = "mqkit.webhooks.retry"
EVENTS_TOPIC = "mqkit.webhooks.events"
DISABLE_AFTER = 5 * 24 * 3600.0
THROTTLING = frozenset({429, 502, 503, 504})
# Headers a retry carries: which endpoint, which attempt comes next, the original topic.
H_ENDPOINT, H_ATTEMPT, H_TOPIC = WEBHOOK_ENDPOINT, WEBHOOK_ATTEMPT, WEBHOOK_TOPIC
_OWN = (H_ENDPOINT, H_ATTEMPT, H_TOPIC)


def _state(endpoint: Endpoint) -> str:
    if not endpoint.enabled:
        return "disabled"
    return "healthy" if endpoint.failing_since is None else "failing"


def retry_job(
    message: Message, endpoint_id: str, topic: str, attempt: int, retry_topic: str = RETRY_TOPIC
) -> Message:
    """The message as a retry: same id and body, plus which endpoint and attempt it is for."""
    headers = {**message.headers, H_ENDPOINT: endpoint_id, H_ATTEMPT: str(attempt), H_TOPIC: topic}
    return message.with_changes(topic=retry_topic, key=None, headers=headers, attempt=0)


class Dispatcher:
    def __init__(
        self,
        broker: Broker,
        registry: EndpointRegistry,
        attempt_log: AttemptLog,
        *,
        topics: Sequence[str] | None = None,
        group: str = GROUP,
        client: WebhookClient | None = None,
        schedule: Schedule | None = None,
        retry_topic: str = RETRY_TOPIC,
        events_topic: str = EVENTS_TOPIC,
        disable_after: float = DISABLE_AFTER,
        breaker: Breaker | None = None,
        refresh: float = 5.0,
        in_flight: int = 512,
        content_type: str = "application/json",
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.attempt_log = attempt_log
        self.topics = list(topics) if topics else None
        self.group = group
        self.client = client or WebhookClient()
        self.schedule = schedule or Schedule()
        self.retry_topic = retry_topic
        self.breaker = breaker or Breaker()
        self.refresh = refresh
        self.in_flight = in_flight
        self.content_type = content_type
        self.stats = DispatchStats()
        # Set while run() has every subscription in place (on Kafka, once the group's
        # rebalance for the last one is over): messages published after are not dispatched
        # twice by a rebalance that was still to come.
        self.ready = asyncio.Event()
        self.health = EndpointHealth(
            broker, registry, self.stats,
            disable_after=disable_after, breaker=self.breaker, events_topic=events_topic,
        )  # fmt: skip
        self._lanes: dict[str, Lane] = {}  # by endpoint id; each holds its endpoint
        self._budget = asyncio.Semaphore(in_flight)

    # Kept by the endpoint health, which acts on them; readable here as before.
    @property
    def disable_after(self) -> float:
        return self.health.disable_after

    @property
    def events_topic(self) -> str:
        return self.health.events_topic

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.load_endpoints()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def load_endpoints(self) -> None:
        endpoints = await self.registry.list()
        lanes: dict[str, Lane] = {}
        for endpoint in endpoints:
            lane = self._lanes.get(endpoint.id)
            if lane is None:
                lane = Lane(endpoint, self.breaker)
            else:
                lane.refresh(endpoint)
            lanes[endpoint.id] = lane
        self._lanes = lanes
        meters = metering.instruments()
        if meters is not None:
            states = collections.Counter(_state(e) for e in endpoints)
            for state in ("healthy", "failing", "disabled"):
                meters.set("mqkit.webhook.endpoints", states[state], {"mqkit.webhook.state": state})

    def source_topics(self) -> list[str]:
        """The topics given, else every plain topic (not a pattern) an endpoint names."""
        if self.topics:
            return self.topics
        named = {
            t
            for lane in self._lanes.values()
            for t in lane.endpoint.topics
            if not any(c in t for c in "*?[")
        }
        return sorted(named)

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set, then let attempts in flight finish (also as a
        service of an App, which does not enter it: the endpoints are read here then)."""
        if not self._lanes:
            await self.load_endpoints()
        topics = self.source_topics()
        if not topics:
            raise ValueError("no topics to dispatch: add an endpoint or name --topic")
        feeds: list[Feed] = []
        ending = asyncio.Event()
        refresh = asyncio.create_task(self._refresh_until(ending))
        try:
            for topic in [*topics, self.retry_topic]:
                sub = await self.broker.subscribe(topic, group=self.group, prefetch=self.in_flight)
                handle = self._retry if topic == self.retry_topic else self._fan_out
                feeds.append(Feed(sub, self._within_budget(handle), self._budget.acquire,
                                  name=f"mqkit-webhooks-{topic}"))  # fmt: skip
            self.ready.set()
            await stop.wait()
        finally:
            self.ready.clear()
            ending.set()
            await asyncio.gather(refresh, return_exceptions=True)
            await asyncio.gather(*(feed.stop() for feed in feeds))

    async def close(self) -> None:
        await self.client.close()
        await self.attempt_log.flush()

    async def _refresh_until(self, ending: asyncio.Event) -> None:
        """Re-read the endpoints every `refresh` seconds until `ending`; it ends between
        reads, never cancelled in one: a SQLite read cancelled midway keeps the file locked
        until its connection is garbage-collected, and the attempt log cannot commit."""
        while not ending.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ending.wait(), self.refresh)
                return
            try:
                await self.load_endpoints()
            except Exception as exc:  # keep dispatching with what we have
                log.warning("cannot re-read webhook endpoints: %s", exc)

    def _within_budget(
        self, handle: Callable[[Delivery], Awaitable[None]]
    ) -> Callable[[Delivery], Coroutine[Any, Any, None]]:
        """`handle`, giving back the in-flight budget the feed took for the delivery."""

        async def handled(delivery: Delivery) -> None:
            try:
                tracer = tracing.tracer()
                if tracer is None:
                    await handle(delivery)
                else:
                    await self._traced(tracer, handle, delivery)
            finally:
                self._budget.release()

        return handled

    async def _traced(
        self, tracer: Tracer, handle: Callable[[Delivery], Awaitable[None]], delivery: Delivery
    ) -> None:
        """A `process` span continuing the message's trace; each HTTP attempt is a client
        span within it (client.py), a retry scheduled here carries it on."""
        from mqkit.telemetry import spans

        system, message = self.broker.SYSTEM, delivery.message
        with spans.processing(tracer, system, message, self.group) as span:
            try:
                await handle(delivery)
            except BaseException as exc:
                spans.outcome(span, "failed", exc)
                raise
            spans.outcome(span, "handled", None)

    # -- a message from a source topic ---------------------------------------------------------

    async def _fan_out(self, delivery: Delivery) -> None:
        message = delivery.message
        targets = [
            lane.endpoint
            for lane in self._lanes.values()
            if lane.endpoint.enabled and lane.endpoint.matches(message.topic)
        ]
        errors: list[BaseException] = []
        if len(targets) == 1:  # the common case, without a task per target
            try:
                await self._first_attempt(targets[0], message)
            except Exception as exc:
                errors.append(exc)
        elif targets:
            results = await asyncio.gather(
                *(self._first_attempt(e, message) for e in targets), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            # A retry could not be scheduled (the broker is down): have the whole message
            # again later; endpoints that got it will get it again with the same webhook-id.
            log.warning("cannot schedule webhook retries for %s: %s", message.id, errors[0])
            await delivery.nack(delay=5.0)
        else:
            await delivery.ack()

    async def _first_attempt(self, endpoint: Endpoint, message: Message) -> None:
        lane = self._lanes[endpoint.id]
        wait = lane.defer_for(time.time())
        if wait is not None:
            await self._schedule(endpoint, message, message.topic, 1, wait)
            self.stats.deferred += 1
            return
        await self._attempt(lane, message, message.topic, 1)

    # -- a retry --------------------------------------------------------------------------------

    async def _retry(self, delivery: Delivery) -> None:
        job = delivery.message
        endpoint_id = job.headers.get(H_ENDPOINT, "")
        topic = job.headers.get(H_TOPIC, "")
        try:
            attempt = int(job.headers.get(H_ATTEMPT, ""))
        except ValueError:
            await delivery.reject("not a webhook retry: no attempt number")
            return
        original = job.with_changes(
            topic=topic, headers={k: v for k, v in job.headers.items() if k not in _OWN}
        )
        lane = self._lanes.get(endpoint_id)
        if lane is None or not lane.endpoint.enabled:
            if lane is not None:  # kept in the log, so a replay after enabling finds it
                self._record(
                    lane.endpoint, original, attempt, None, "disabled", "endpoint disabled"
                )
            await delivery.ack()
            return
        wait = lane.defer_for(time.time())
        if wait is not None:
            await self._schedule(lane.endpoint, original, topic, attempt, wait)
            self.stats.deferred += 1
        else:
            await self._attempt(lane, original, topic, attempt)
        await delivery.ack()

    # -- one attempt --------------------------------------------------------------------------

    async def _attempt(self, lane: Lane, message: Message, topic: str, attempt: int) -> None:
        async with lane.slot():
            endpoint = lane.endpoint  # read after the wait: it may have changed (rotation)
            headers = sign(endpoint.signing_secrets(), message.id, message.body)
            headers["content-type"] = message.content_type or self.content_type
            response = await self.client.post(endpoint.url, message.body, headers)
        now = time.time()
        lane.count(response.ok, now)
        if response.ok:
            self.stats.delivered += 1
            self._record(endpoint, message, attempt, response, "delivered")
            if lane.failing_since is not None:
                lane.failing_since = None
                await self.registry.mark_failing(endpoint.id, None)
            return
        self.stats.failed_attempts += 1
        if response.status == 410:
            self._record(endpoint, message, attempt, response, "disabled")
            await self.health.disable(lane, endpoint, "the endpoint answered 410 Gone")
            return
        if response.refused:
            self.stats.refused += 1
            self._record(endpoint, message, attempt, response, "refused")
            log.warning("webhook %s to %s refused: %s", message.id, endpoint.id, response.error)
        else:
            await self._retry_later(lane, endpoint, message, topic, attempt, response)
        await self.health.failed(lane, now)

    async def _retry_later(
        self,
        lane: Lane,
        endpoint: Endpoint,
        message: Message,
        topic: str,
        attempt: int,
        response: Response,
    ) -> None:
        wait = self.schedule.wait_before(attempt + 1) if attempt < self.schedule.attempts else 0
        if response.status in THROTTLING:
            pause = retry_after(response.retry_after)
            if pause is not None:
                lane.throttle(pause)
                wait = max(wait, pause)
        if attempt >= self.schedule.attempts:
            self._record(endpoint, message, attempt, response, "failed")
            await self.health.exhausted(endpoint, message, topic, attempt, response)
        else:
            await self._schedule(endpoint, message, topic, attempt + 1, wait)
            self._record(endpoint, message, attempt, response, "retrying")

    def _record(
        self,
        endpoint: Endpoint,
        message: Message,
        attempt: int,
        response: Response | None,
        outcome: str,
        error: str | None = None,
    ) -> None:
        meters = metering.instruments()
        if meters is not None:
            attributes = {"mqkit.webhook.outcome": outcome, "mqkit.webhook.endpoint": endpoint.id}
            meters.webhook_attempts.add(1, attributes)
        self.attempt_log.record(
            Attempt(
                endpoint_id=endpoint.id,
                message_id=message.id,
                topic=message.topic,
                attempt=attempt,
                at=time.time(),
                status=response.status if response else None,
                ok=bool(response and response.ok),
                latency_ms=round(response.latency_ms, 3) if response else 0.0,
                outcome=outcome,
                error=(response.error if response else None) or error,
                response=excerpt(response.body) if response and response.body else None,
            ),
            message,
        )

    async def _schedule(
        self, endpoint: Endpoint, message: Message, topic: str, attempt: int, wait: float
    ) -> None:
        job = retry_job(message, endpoint.id, topic, attempt, self.retry_topic)
        await self.broker.publish_batch([job], delay=wait or None)
