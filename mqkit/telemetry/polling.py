"""Reading a gauge's value now and then (consumer lag, an outbox's backlog, pending half
messages): `every(interval, read)` in a task of its own, next to the work it watches. A read
that fails (the broker or the database is down) is logged once per outage and tried again
at the next interval; the gauge keeps its last value meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("mqkit")

DEFAULT_INTERVAL = 15.0  # Prometheus's default scrape interval


async def every(interval: float, read: Callable[[], Awaitable[None]], what: str) -> None:
    """`read()` now and every `interval` seconds, until cancelled."""
    failing = False
    while True:
        try:
            await read()
            failing = False
        except Exception as exc:
            if not failing:
                log.warning("mqkit: cannot read %s for its metrics: %s", what, exc)
            failing = True
        await asyncio.sleep(interval)


def start(interval: float, read: Callable[[], Awaitable[None]], what: str) -> asyncio.Task[None]:
    return asyncio.create_task(every(interval, read, what), name=f"mqkit-metrics-{what}")


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
