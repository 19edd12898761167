"""An App hosted by someone else's program: a Starlette lifespan, as the README shows it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import mqkit
from tests.support.waiting import until


async def test_an_app_runs_in_a_starlette_lifespan_and_stops_with_it() -> None:
    app = mqkit.App("memory://embedded")
    handled: list[int] = []

    @app.subscriber("orders", group="billing")
    async def bill(order: dict[str, int]) -> None:
        handled.append(order["id"])

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with app.running():
            yield

    async def create_order(request: Request) -> Response:
        await app.publish("orders", await request.json())
        return Response(status_code=202)

    web = Starlette(lifespan=lifespan, routes=[Route("/orders", create_order, methods=["POST"])])
    transport = httpx.ASGITransport(app=web)
    async with (
        web.router.lifespan_context(web),
        httpx.AsyncClient(transport=transport, base_url="http://web") as client,
    ):  # the lifespan around the requests, as a server runs it
        for n in range(5):
            assert (await client.post("/orders", json={"id": n})).status_code == 202
        await until(lambda: len(handled) == 5)
        assert sorted(handled) == [0, 1, 2, 3, 4]
    assert app._broker is None  # the lifespan ended: the app closed the broker it made
