from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import mqkit
from tests.support.conformance import Target, selected


@pytest.fixture(params=selected(), ids=lambda t: t.name)
def target(request: pytest.FixtureRequest) -> Target:
    t: Target = request.param
    return t


@pytest.fixture
def make_url(target: Target, tmp_path: Path) -> Callable[..., str]:
    """make_url() -> a URL for this test's backend; make_url('lease=1s') adds options."""

    def make(options: str = "") -> str:
        return target.make_url(tmp_path, options)

    return make


@pytest.fixture
def url(make_url: Callable[..., str]) -> str:
    return make_url()


@pytest.fixture
async def broker(url: str) -> AsyncIterator[mqkit.Broker]:
    async with mqkit.connect(url) as b:
        yield b


@pytest.fixture
def topic() -> str:
    return f"conf-{uuid.uuid4().hex[:12]}"
