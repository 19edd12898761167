"""Services hosted by an App: made from its broker, started with it, stopped on its stop,
cancelled past the deadline, closed; one that fails is logged and leaves the others running."""

from __future__ import annotations

import asyncio

import pytest

import mqkit
from tests.support.waiting import until


class Ticker:
    def __init__(self, broker: mqkit.Broker | None = None, *, ignore_stop: bool = False) -> None:
        self.broker = broker
        self.ignore_stop = ignore_stop
        self.ticks = 0
        self.stopped = self.closed = False

    async def run(self, stop: asyncio.Event) -> None:
        while self.ignore_stop or not stop.is_set():
            self.ticks += 1
            await asyncio.sleep(0.01)
        self.stopped = True

    async def close(self) -> None:
        self.closed = True


class Broken(Ticker):
    async def run(self, stop: asyncio.Event) -> None:
        raise RuntimeError("cannot reach its database")


async def test_services_run_with_the_app_and_stop_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made: list[Ticker] = []

    def make(broker: mqkit.Broker) -> Ticker:
        made.append(Ticker(broker))
        return made[-1]

    stubborn, broken = Ticker(ignore_stop=True), Broken()
    app = mqkit.App("memory://", shutdown_timeout=0.3)
    for service in (make, stubborn, broken):
        app.add_service(service)
    async with app.running():
        await until(lambda: made and made[0].ticks > 3 and stubborn.ticks > 3)
        assert made[0].broker is app.broker  # made from the running App's broker
    (ticker,) = made
    assert ticker.stopped and ticker.closed  # saw the stop, then closed
    assert not stubborn.stopped and stubborn.closed  # cancelled at the deadline, closed
    assert broken.closed and "service Broken failed" in caplog.text
