"""The webhook receiver: an ASGI app that verifies Standard Webhooks deliveries and publishes
them to a topic. Serve it with `mqkit webhook serve`, or mount it into your own app:

    receiver = Receiver(broker, [Source("stripe", ["whsec_..."], topic="payments.stripe")])
    app.mount("/hooks", receiver)

Per request, cheapest check first: overload (429 with Retry-After, before reading anything),
the route, the body size (413 from Content-Length, or as soon as a streamed body passes the
limit), the signature over the raw body and the timestamp (401 with the reason), then
`webhook-id` deduplication: a delivery already enqueued gets 200 again and is not published
twice, also when 100 copies arrive at once. The mqkit message id is derived from the source
and the sender's `webhook-id` (kept in the `webhook-id` header): a sender's own retries map to
the same message, while one sender can never reuse an id to shadow another's messages.
The answer comes only after the broker confirmed the publish; a broker that cannot take it
gets 503 with Retry-After, so the sender retries and nothing acknowledged is ever dropped.
Bad input never gets a 500.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mqkit.broker import Broker
from mqkit.errors import WebhookVerificationError
from mqkit.idempotency.memory import MemoryStore
from mqkit.idempotency.store import Claim, IdempotencyStore
from mqkit.ratelimit import Limiter
from mqkit.telemetry import metering, tracing
from mqkit.webhooks.signing import (
    DEFAULT_TOLERANCE,
    Secret,
    verify,
)
from mqkit.wire import WEBHOOK_SOURCE

log = logging.getLogger("mqkit.webhooks")

DEFAULT_MAX_BODY = 1024 * 1024
# How long a duplicate waits for the copy that is being enqueued before it asks to retry.
BUSY_WAIT = 10.0
# Fixed for good: changing it would give every in-flight delivery a new message id.
_ID_NAMESPACE = uuid.UUID("6b1d2f0e-5a43-4c1b-9a8e-0c6f3b1d7e21")


def message_id(source: str, webhook_id: str) -> str:
    """The mqkit message id of `source`'s delivery `webhook_id`: the same for every retry of
    it, distinct across sources (a NUL cannot occur in a route segment or a header)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{source}\0{webhook_id}"))


@dataclass(frozen=True)
class Source:
    """Who sends to `/<name>`: their secret(s) (several during a rotation) and the topic."""

    name: str
    secrets: Sequence[Secret | str]
    topic: str
    tolerance: float = DEFAULT_TOLERANCE

    def keys(self) -> list[Secret]:
        return [s if isinstance(s, Secret) else Secret(s) for s in self.secrets]


class _TooLarge(Exception):
    pass


class Receiver:
    def __init__(
        self,
        broker: Broker,
        sources: Sequence[Source],
        *,
        dedup: IdempotencyStore | None = None,
        dedup_ttl: float | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_pending: int = 1000,
        limiter: Limiter | None = None,
    ) -> None:
        """`limiter` (keyed by source name; a RedisLimiter shares it across receivers) makes
        a sender over its rate get 429 with the Retry-After the limiter computed."""
        if not sources:
            raise ValueError("a receiver needs at least one source")
        self.broker = broker
        self.sources = {s.name: s for s in sources}
        self._keys = {s.name: s.keys() for s in sources}
        # A delivery is accepted for `tolerance` seconds either side of its timestamp, so
        # remembering its id for twice the largest tolerance outlives every valid replay.
        self.dedup = dedup or MemoryStore()
        self.dedup_ttl = dedup_ttl or 2 * max(s.tolerance for s in sources)
        self.max_body = max_body
        self.max_pending = max_pending
        self.pending = 0
        self.limiter = limiter
        self.app = Starlette(routes=[Route("/{source}", self._receive, methods=["POST"])])
        self._traced: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._traced is None and tracing.tracer() is not None:
            # OpenTelemetry's ASGI instrumentation: a server span per request, continuing the
            # sender's traceparent; the message published within it carries that trace.
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

            self._traced = OpenTelemetryMiddleware(self.app, exclude_spans=["receive", "send"])
        await (self._traced or self.app)(scope, receive, send)

    async def _receive(self, request: Request) -> Response:
        response = await self._reply(request)
        meters = metering.instruments()
        if meters is not None:
            attributes: dict[str, str | int] = {
                "http.response.status_code": response.status_code,
                "mqkit.webhook.source": request.path_params["source"]
                if request.path_params["source"] in self.sources
                else "(unknown)",  # a bounded set of values, whatever senders try
            }
            meters.webhook_received.add(1, attributes)
        return response

    async def _reply(self, request: Request) -> Response:
        if self.pending >= self.max_pending:
            return _answer(429, "overloaded, retry later", retry_after=1)
        source = self.sources.get(request.path_params["source"])
        if source is None:
            return _answer(404, "no such webhook source")
        if self.limiter is not None:
            permit = await self.limiter.reserve(source.name, max_wait=0)
            if not permit.granted:
                return _answer(429, "over the rate limit", retry_after=math.ceil(permit.wait))
        self.pending += 1
        try:
            return await self._accept(source, request)
        except ClientDisconnect:
            return _answer(400, "the client went away")
        except Exception:  # our fault, not the sender's: ask it to retry
            log.exception("webhook receiver failed")
            return _answer(503, "cannot accept right now", retry_after=5)
        finally:
            self.pending -= 1

    async def _accept(self, source: Source, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return _answer(413, f"body over {self.max_body} bytes")
        try:
            body = await self._read(request)
        except _TooLarge:
            return _answer(413, f"body over {self.max_body} bytes")
        try:
            msg_id = verify(
                self._keys[source.name], request.headers, body, tolerance=source.tolerance
            )
        except WebhookVerificationError as exc:
            return _answer(401, str(exc))
        key = message_id(source.name, msg_id)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            claim = await self.dedup.claim(key, token, lease=60.0)
            if claim is Claim.DONE:
                return _answer(
                    200, "duplicate, already enqueued", webhook_id=msg_id, message_id=key
                )
            if claim is Claim.NEW:
                break
            if time.monotonic() > deadline:  # the first copy is still being enqueued
                return _answer(429, "the same delivery is being enqueued", retry_after=1)
            await asyncio.sleep(0.02)
        try:
            await self.broker.publish(
                source.topic,
                body,
                id=key,
                headers={
                    "webhook-id": msg_id,
                    "webhook-timestamp": request.headers.get("webhook-timestamp", ""),
                    WEBHOOK_SOURCE: source.name,
                },
                content_type=request.headers.get("content-type") or "application/octet-stream",
            )
        except BaseException as exc:
            await self.dedup.release(key, token)
            if isinstance(exc, Exception):
                log.warning("cannot enqueue webhook %s: %s", msg_id, exc)
                return _answer(503, "cannot enqueue right now", retry_after=5)
            raise
        await self.dedup.complete(key, token, self.dedup_ttl)
        return _answer(200, "enqueued", webhook_id=msg_id, message_id=key)

    async def _read(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)


def _answer(
    status: int,
    detail: str,
    *,
    retry_after: int | None = None,
    webhook_id: str | None = None,
    message_id: str | None = None,
) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    content: dict[str, str] = {"detail": detail}
    if webhook_id is not None:
        content["webhook_id"] = webhook_id
    if message_id is not None:
        content["message_id"] = message_id
    return JSONResponse(content, status_code=status, headers=headers)
