"""Pytest fixtures for your own tests; enable them in a conftest.py:

    pytest_plugins = ["mqkit.testing.pytest_plugin"]

`mqkit_broker`: a started in-memory broker of the test's own. `mqkit_test_app`: runs an App
on one (see mqkit.testing.TestApp), stopped when the test ends:

    async def test_billing(mqkit_test_app) -> None:
        t = await mqkit_test_app(app)
        await t.publish("orders", {"id": 1, "amount": 9.5})
        await t.settled()
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from mqkit.broker import Broker
from mqkit.registry import connect
from mqkit.testing.app import TestApp
from mqkit.worker import App


@pytest_asyncio.fixture
async def mqkit_broker() -> AsyncIterator[Broker]:
    async with connect(f"memory://test-{uuid.uuid4().hex}") as broker:
        yield broker


@pytest_asyncio.fixture
async def mqkit_test_app() -> AsyncIterator[Callable[[App], Awaitable[TestApp]]]:
    async with contextlib.AsyncExitStack() as running:

        async def start(app: App) -> TestApp:
            return await running.enter_async_context(TestApp(app))

        yield start
