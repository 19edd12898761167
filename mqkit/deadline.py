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

log = logging.getLogger("mqkit")

T = TypeVar("T")


async def within_deadline(
    attempt: Callable[[], Awaitable[T]],
    *,
    timeout: float,
    what: str,
    retry: tuple[type[BaseException], ...] = (),
    pause: float = 0.2,
) -> T:
    """`attempt()` until it returns, again after `pause` seconds whenever it raises one of
    `retry` (the broker is away), for at most `timeout` seconds in all."""
    last: BaseException | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    return await attempt()
                except retry as exc:
                    last = exc
                    log.debug("mqkit: %s failed (%r); trying again", what, exc)
                    await asyncio.sleep(pause)
    except TimeoutError as exc:
        detail = f" (last error: {last!r})" if last is not None else ""
        raise PublishTimeoutError(f"{what} did not complete within {timeout:g}s{detail}") from exc
