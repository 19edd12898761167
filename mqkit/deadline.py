"""Publishing within a deadline: what every adapter does when its broker goes away. An
attempt that fails because the broker is unreachable is tried again until `publish_timeout`;
then PublishTimeoutError, naming the broker and the last error, instead of a hang.

    await within_deadline(send, timeout=self.publish_timeout,
                          what=f"publish to Redis at {self.safe_url}", retry=NETWORK_ERRORS)

The outcome of an attempt cut off at the deadline is unknown (the client may still deliver
it), which is what PublishTimeoutError tells the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mqkit.errors import PublishTimeoutError
from mqkit.shutdown import abandon

log = logging.getLogger("mqkit")

T = TypeVar("T")


async def within_deadline(
    attempt: Callable[[], Awaitable[T]],
    *,
    timeout: float,
    what: str,
    retry: tuple[type[BaseException], ...] = (),
    pause: float = 0.2,
    detached: bool = False,
) -> T:
    """`attempt()` until it returns, again after `pause` seconds whenever it raises one of
    `retry` (the broker is away), for at most `timeout` seconds in all.

    `detached`: the attempts run as a task of their own, and the caller stops waiting at
    the deadline even when the client is slow to honour the cancellation (aiokafka stopping
    or starting a producer against a dead broker ignored it for seconds): the timeout is the
    timeout, and the task is cancelled and left to end."""
    errors: list[BaseException] = []
    attempts = _until_done(attempt, what, retry, pause, errors)
    if not detached:
        try:
            async with asyncio.timeout(timeout):
                return await attempts
        except TimeoutError as exc:
            raise _timed_out(what, timeout, errors) from exc
    task = asyncio.ensure_future(attempts)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        abandon(task)
        raise _timed_out(what, timeout, errors)
    return task.result()


async def _until_done(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    retry: tuple[type[BaseException], ...],
    pause: float,
    errors: list[BaseException],
) -> T:
    while True:
        try:
            return await attempt()
        except retry as exc:
            errors.append(exc)
            log.debug("mqkit: %s failed (%r); trying again", what, exc)
            await asyncio.sleep(pause)


def _timed_out(what: str, timeout: float, errors: list[BaseException]) -> PublishTimeoutError:
    detail = f" (last error: {errors[-1]!r})" if errors else ""
    return PublishTimeoutError(f"{what} did not complete within {timeout:g}s{detail}")
