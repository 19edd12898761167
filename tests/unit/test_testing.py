"""mqkit.testing for users: TestApp and the pytest fixtures on the real memory:// semantics,
and the conformance suite run as a command from outside the repository."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pydantic
import pytest

import mqkit
from mqkit.testing import TestApp
from mqkit.testing.pytest_plugin import mqkit_broker, mqkit_test_app

__all__ = ["mqkit_broker", "mqkit_test_app"]  # the fixtures, used by name below


class Order(pydantic.BaseModel):
    id: int
    amount: float = pydantic.Field(gt=0)


def billing_app() -> tuple[mqkit.App, list[int]]:
    app = mqkit.App(retry=mqkit.RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02))
    billed: list[int] = []
    flaky = {"left": 2}

    @app.subscriber("orders", group="billing")
    async def bill(order: Order) -> None:
        if order.id == 3 and flaky["left"]:
            flaky["left"] -= 1
            raise ConnectionError("payment service down")
        billed.append(order.id)

    return app, billed


async def test_test_app_settles_retries_and_dead_letters() -> None:
    app, billed = billing_app()
    async with TestApp(app) as t:
        for i in (1, 2, 3):
            await t.publish("orders", {"id": i, "amount": 9.5})
        await t.publish("orders", {"id": 4, "amount": -1})  # does not validate
        await t.settled()
        stats = t.stats("orders")
        (dead,) = await t.dead_letters("orders")
    assert sorted(billed) == [1, 2, 3]  # 3 after two retries: settled() waited for them
    assert (stats.handled, stats.retried, stats.dead_lettered) == (3, 2, 1)
    assert dead.error_type == "DecodeError"
    with pytest.raises(RuntimeError):
        app.broker  # noqa: B018  # given back: the App has no broker outside the block


async def test_settled_times_out_on_a_handler_that_never_finishes() -> None:
    app = mqkit.App()

    @app.subscriber("t", group="g")
    async def stuck(body: bytes) -> None:
        await asyncio.Event().wait()

    app.shutdown_timeout = 0.1
    async with TestApp(app) as t:
        await t.publish("t", b"x")
        with pytest.raises(TimeoutError):
            await t.settled(timeout=0.3)


async def test_stats_name_the_group_when_several_read_a_topic() -> None:
    app = mqkit.App()
    for group in ("a", "b"):
        app.subscriber("t", group=group)(_noop)
    async with TestApp(app) as t:
        await t.publish("t", b"x")
        await t.settled()
        assert t.stats("t", "a").handled == t.stats("t", "b").handled == 1
        with pytest.raises(LookupError, match="name the group"):
            t.stats("t")


async def _noop(body: bytes) -> None:
    pass


async def test_the_fixtures(
    mqkit_broker: mqkit.Broker, mqkit_test_app: Callable[[mqkit.App], Awaitable[TestApp]]
) -> None:
    assert mqkit_broker.capabilities.redelivery
    app, billed = billing_app()
    t = await mqkit_test_app(app)
    await t.publish("orders", {"id": 1, "amount": 1})
    await t.settled()
    assert billed == [1]


def test_conformance_runs_as_a_command_outside_the_repository(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mqkit.testing.conformance"]
    done = subprocess.run(
        [*command, "memory://"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
    usage = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr
