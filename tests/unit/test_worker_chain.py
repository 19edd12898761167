"""The worker's policies as one middleware chain: their order, the outcome a middleware
sets, and every part's stats in one shape."""

from __future__ import annotations

import asyncio
import warnings

import pytest

import mqkit
from mqkit.middleware import CallNext, Context
from mqkit.stats import Counters
from tests.support.waiting import until


async def test_user_middleware_runs_inside_the_policies_and_sees_the_delivery() -> None:
    seen: list[tuple[bool, object]] = []

    async def look(ctx: Context, call_next: CallNext) -> None:
        # Inside the retry policy: the delivery is there and not yet settled.
        seen.append((ctx.delivery is not None, ctx.outcome))
        await call_next(ctx)

    async with mqkit.connect("memory://") as broker:
        app = mqkit.App(broker=broker, middleware=[look])

        @app.subscriber("t", group="g")
        async def handle(body: bytes) -> None:
            pass

        async with app.running():
            await broker.publish("t", b"x")
            await until(lambda: app.subscribers[0].stats.handled == 1)
    assert seen == [(True, None)]


async def test_an_outcome_set_by_a_middleware_is_counted_as_such() -> None:
    async def already_done(ctx: Context, call_next: CallNext) -> None:
        ctx.outcome = "duplicate"  # decided without the handler, as idempotency does

    async with mqkit.connect("memory://") as broker:
        app = mqkit.App(broker=broker, middleware=[already_done])

        @app.subscriber("t", group="g")
        async def handle(body: bytes) -> None:
            raise AssertionError("not called")

        async with app.running():
            await broker.publish("t", b"x")
            await until(lambda: app.subscribers[0].stats.duplicates == 1)
        assert app.subscribers[0].stats.handled == 0


async def test_a_replay_for_another_group_waits_for_no_keyed_limit() -> None:
    # The replay filter is outside the keyed limit: a message the group skips spends none
    # of its key's rate (one per hour here), so the next message for that key runs at once.
    async with mqkit.connect("memory://") as broker:
        app = mqkit.App(broker=broker)
        handled: list[bytes] = []

        @app.subscriber("t", group="g", rate="1/h", rate_by=lambda m: m.key or "")
        async def handle(body: bytes) -> None:
            handled.append(body)

        async with app.running():
            await broker.publish("t", b"other", key="k", headers={"mqkit-replay-group": "x"})
            await broker.publish("t", b"mine", key="k")
            await until(lambda: handled == [b"mine"])
        assert app.subscribers[0].stats.skipped == 1


async def test_app_stats_show_subscribers_and_services_in_one_shape() -> None:
    class Ticker:
        def __init__(self) -> None:
            from dataclasses import make_dataclass

            self.stats = make_dataclass("TickStats", [("ticks", int, 0)], bases=(Counters,))()

        async def run(self, stop: asyncio.Event) -> None:
            self.stats.ticks += 1  # type: ignore[attr-defined]
            await stop.wait()

        async def close(self) -> None:
            pass

    async with mqkit.connect("memory://") as broker:
        app = mqkit.App(broker=broker)
        app.add_service(Ticker())

        @app.subscriber("t", group="g", concurrency=3)
        async def handle(body: bytes) -> None:
            pass

        async with app.running():
            await broker.publish("t", b"x")
            await until(lambda: app.stats()["subscriber t/g"]["handled"] == 1)
            await until(lambda: app.stats().get("service Ticker", {}).get("ticks") == 1)
            shown = app.stats()
    assert shown["subscriber t/g"] == {
        "handled": 1,
        "duplicates": 0,
        "skipped": 0,
        "retried": 0,
        "dead_lettered": 0,
        "in_flight": 0,
        "concurrency_limit": 3,
    }
    assert "service Ticker" not in app.stats()  # services are shown while they run


def test_the_old_module_path_warns_and_works() -> None:
    with pytest.warns(DeprecationWarning, match="mqkit.worker.App"):
        from mqkit.app import App
    assert App is mqkit.App
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from mqkit.worker import Stats  # the new path does not warn
    assert {"in_flight", "concurrency_limit"} == Stats.GAUGES


def test_every_service_keeps_its_stats_in_the_one_shape() -> None:
    from mqkit.half.checker import CheckerStats
    from mqkit.outbox.relay import RelayStats
    from mqkit.webhooks.dispatcher import DispatchStats

    dispatched = DispatchStats(delivered=2, disabled=["ep1", "ep2", "ep3"])
    assert dispatched.snapshot() == {
        "delivered": 2,
        "failed_attempts": 0,
        "exhausted": 0,
        "refused": 0,
        "deferred": 0,
        "disabled": 3,  # a list counts its items
    }
    assert RelayStats(relayed=5).snapshot() == {"relayed": 5, "failed": 0}
    assert set(CheckerStats().snapshot()) == {
        "committed",
        "rolled_back",
        "unknown",
        "dead_lettered",
        "finished",
    }
