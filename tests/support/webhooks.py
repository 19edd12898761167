"""Real HTTP endpoints on 127.0.0.1 for the webhook tests, each answering from a script.

`Script` decides each answer from the request count (overall, or per webhook-id): a list of
statuses (the last repeats),
`hang=True` (never answers), a redirect, or headers such as Retry-After. Every request that
reaches the server is kept with its time, headers and body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    statuses: list[int] = field(default_factory=lambda: [204])
    hang: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    # Count per webhook-id instead: the statuses apply to each delivery's attempts in turn.
    per_id: bool = False
    received: list[Received] = field(default_factory=list)

    def next_status(self) -> int:
        if self.per_id:
            msg_id = self.received[-1].headers.get("webhook-id")
            n = sum(r.headers.get("webhook-id") == msg_id for r in self.received) - 1
        else:
            n = len(self.received) - 1
        return self.statuses[min(n, len(self.statuses) - 1)]


class Endpoints:
    """`await endpoints.url("name", Script(...))` -> the URL that answers per the script."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.scripts: dict[str, Script] = {}

    def url(self, name: str, script: Script | None = None, host: str = "127.0.0.1") -> str:
        self.scripts[name] = script or Script()
        return f"http://{host}:{self.port}/{name}"

    def __getitem__(self, name: str) -> Script:
        return self.scripts[name]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        script = self.scripts.get(request.match_info["name"])
        if script is None:
            return web.Response(status=404)
        body = await request.read()
        script.received.append(Received(time.time(), dict(request.headers), body))
        if script.hang:
            await asyncio.sleep(3600)
        status = script.next_status()
        return web.Response(status=status, headers=script.headers, text="answer " * 400)


@asynccontextmanager
async def serving() -> AsyncIterator[Endpoints]:
    app = web.Application()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    endpoints = Endpoints(0)
    app.router.add_route("*", "/{name}", endpoints.handle)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server) and server.sockets
    endpoints.port = server.sockets[0].getsockname()[1]
    try:
        yield endpoints
    finally:
        await runner.cleanup()
