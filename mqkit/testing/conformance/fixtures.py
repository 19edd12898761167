"""The fixtures the conformance cases run on. A suite supplies one: `make_url`, a factory
`make_url(options="") -> str` giving a URL of the backend under test for one test (a fresh
namespace where the backend has one), with extra query options appended. The rest follows
from it: `url`, `broker` (connected and started), `topic` (unique per test)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

import mqkit

MakeUrl = Callable[..., str]


def with_options(url: str, options: str = "") -> str:
    """`url` with query `options` ("lease=1s&retention=1h") appended."""
    if not options:
        return url
    return url + ("&" if "?" in url else "?") + options


def require(broker: mqkit.Broker, *flags: str) -> None:
    """Skip, saying why, when the backend does not claim every capability flag."""
    missing = [f for f in flags if not getattr(broker.capabilities, f)]
    if missing:
        pytest.skip(f"{type(broker).__name__} does not claim {', '.join(missing)}")


@pytest.fixture
def url(make_url: MakeUrl) -> str:
    return make_url()


@pytest_asyncio.fixture
async def broker(url: str) -> AsyncIterator[mqkit.Broker]:
    async with mqkit.connect(url) as b:
        yield b


@pytest.fixture
def topic() -> str:
    return f"conf-{uuid.uuid4().hex[:12]}"
