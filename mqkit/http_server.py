"""uvicorn inside an mqkit process (the webhook receiver, the metrics and health
endpoints): started on the running loop, stopped with the process, and leaving SIGINT and
SIGTERM to mqkit, which stops gracefully on them (uvicorn's own handling re-raises the
signal once it has shut down)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

from mqkit.errors import ConfigurationError


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )


async def started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    """Wait until `server` listens; ConfigurationError if it stopped first (the port is
    taken, the host is not this machine's: uvicorn has logged why)."""
    while not server.started:  # uvicorn offers no event for it
        if serving.done():
            host, port = server.config.host, server.config.port
            raise ConfigurationError(f"cannot serve on {host}:{port} (see the line above)")
        await asyncio.sleep(0.02)


async def _serve(server: uvicorn.Server) -> None:
    # uvicorn exits the process (SystemExit) when it cannot bind; here that is an answer
    # for started(), which the task ending gives.
    with contextlib.suppress(SystemExit):
        await server.serve()


@contextlib.asynccontextmanager
async def serving(app: Any, host: str, port: int) -> AsyncIterator[Server]:
    """Serve `app` on host:port for the duration of the block, listening once it begins;
    leaving it waits for the requests in progress to finish."""
    server = Server(config(app, host, port))
    task = asyncio.create_task(_serve(server), name=f"mqkit-http-{port}")
    try:
        await started(server, task)
        yield server
    finally:
        server.should_exit = True
        await task
