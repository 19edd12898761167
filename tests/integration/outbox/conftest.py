"""Fixtures for the outbox tests: each database (tests.support.databases), and a memory
broker of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.databases import DATABASES, Database, database


@pytest.fixture(params=DATABASES)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database(request.param, tmp_path) as d:
        yield d


@pytest.fixture
def memory_url() -> Iterator[str]:
    yield f"memory://outbox-{uuid.uuid4().hex}"
