"""Chaos 2: a worker SIGKILLed mid-handler at message 500 of 1,000, then started again.

Nothing is lost; what comes twice is bounded by what the worker held (its prefetch); with the
transactional idempotency middleware the effects are exactly 1,000."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from mqkit.sql import async_url
from tests.chaos.worker import effects_table
from tests.support.chaos import Tally, Worker, handled, published_for
from tests.support.services import POSTGRES, URLS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TOTAL = 1_000
CONCURRENCY = 8
PREFETCH = max(10, 2 * CONCURRENCY)  # the App's default: what a worker holds at most


def backend_url(backend: str, tmp_path: Path) -> str:
    """Leased backends return a dead worker's messages when its lease runs out: 5 s here
    (default 30 s) so the case does not wait on the default."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}?lease=5s"
    if backend == "redis":
        return URLS["redis"] + "?lease=5s"
    return URLS[backend]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("effects", [False, True], ids=["plain", "idempotent"])
@pytest.mark.parametrize("backend", ["sqlite", "redis", "rabbitmq", "kafka"])
async def test_worker_killed_mid_handler(backend: str, effects: bool, tmp_path: Path) -> None:
    url = backend_url(backend, tmp_path)
    topic, group = f"chaos-kill-{uuid.uuid4().hex[:8]}", "workers"
    log = tmp_path / "handled.log"
    table = f"effects_{uuid.uuid4().hex[:8]}"
    extra = ["--concurrency", str(CONCURRENCY), "--sleep", "0.01"]
    if effects:
        extra += ["--effects", POSTGRES, "--effects-table", table]
        engine = create_async_engine(async_url(POSTGRES))
        async with engine.begin() as conn:
            await conn.run_sync(effects_table(table).metadata.create_all)

    batch = await published_for(url, topic, group, TOTAL)
    tally = Tally(f"{backend} worker SIGKILL at 500/1000 ({'idempotent' if effects else 'plain'})")
    tally.sent = {m.id for m in batch}

    first = await Worker(url, topic, group, log, *extra).ready()
    await wait_until(lambda: sum(handled(log).values()) >= 500, 120, "500 handled")
    first.kill()
    at_kill = sum(handled(log).values())
    second = await Worker(url, topic, group, log, *extra).ready()
    try:
        await wait_until(lambda: tally.sent <= handled(log).keys(), 120, "all handled")
    finally:
        second.stop()
    tally.received = handled(log)
    more: dict[str, object] = {"handled at kill": at_kill, "in-flight limit": PREFETCH}
    if effects:
        async with engine.connect() as conn:
            t = effects_table(table)
            rows = await conn.execute(
                select(func.count(), func.count(func.distinct(t.c.message_id))).select_from(t)
            )
            count, distinct = rows.one()
        await engine.dispose()
        more["effects"] = count
        assert count == distinct == TOTAL
    tally.report(**more)
    assert tally.lost == 0
    assert tally.duplicated <= PREFETCH
