"""The endpoints `--metrics-port` serves: `/metrics` (Prometheus text format), `/healthz`
(200 while the process runs its loop) and `/readyz` (200 when the process can do its work,
else 503 saying why: the broker does not answer, a subscription ended). A lean Starlette
app, served by mqkit.http_server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

# Why the process cannot do its work now, or None when it can.
Readiness = Callable[[], Awaitable[str | None]]


def probes(registry: CollectorRegistry, ready: Readiness) -> Starlette:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        problem = await ready()
        if problem is not None:
            return PlainTextResponse(f"not ready: {problem}\n", status_code=503)
        return PlainTextResponse("ready\n")

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
