"""Closing clients of brokers that may not answer: close() must return within 5 s anyway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger("mqkit")


async def finish_within(step: Awaitable[object], seconds: float, what: str) -> bool:
    """Give a closing step `seconds`; past that, abandon it. Never raises: a client that
    cannot say goodbye to a dead broker must not keep the caller waiting or failing.
    Returns whether the step completed."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        abandon(task)
        log.info("mqkit: %s did not finish within %.1fs; abandoned", what, seconds)
        return False
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.info("mqkit: %s failed: %r", what, task.exception())
            return False
    return True


def abandon(task: asyncio.Future[Any]) -> None:
    """Cancel a task nobody waits for any more; its outcome, when it comes, is read so
    asyncio does not report it as never retrieved."""
    task.cancel()
    task.add_done_callback(_quiet)


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
