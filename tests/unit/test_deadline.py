"""The adapters' publish-within-deadline helper: retries an outage, gives up at the deadline
with a typed error naming the last failure, lets anything else through at once."""

from __future__ import annotations

import time

import pytest

import mqkit
from mqkit.deadline import within_deadline


async def test_an_outage_is_retried_until_the_attempt_goes_through() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("broker restarting")
        return "sent"

    got = await within_deadline(flaky, timeout=5, what="publish", retry=(ConnectionError,), pause=0)
    assert (got, calls) == ("sent", 3)


async def test_past_the_deadline_a_typed_error_names_the_last_failure() -> None:
    async def down() -> None:
        raise ConnectionError("connection refused")

    started = time.monotonic()
    with pytest.raises(mqkit.PublishTimeoutError) as info:
        await within_deadline(down, timeout=0.3, what="publish to X", retry=(ConnectionError,))
    assert time.monotonic() - started >= 0.3
    assert "publish to X did not complete within 0.3s" in str(info.value)
    assert "connection refused" in str(info.value)


async def test_a_failure_that_is_not_an_outage_is_not_retried() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("message too large")

    with pytest.raises(ValueError):
        await within_deadline(refused, timeout=5, what="publish", retry=(ConnectionError,))
    assert calls == 1


async def test_detached_the_deadline_holds_against_an_attempt_deaf_to_cancellation() -> None:
    import asyncio

    release = asyncio.Event()

    async def deaf() -> None:
        # A client that swallows the cancellation and goes on until it is done.
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    call = asyncio.ensure_future(within_deadline(deaf, timeout=0.2, what="p", detached=True))
    done, _ = await asyncio.wait({call}, timeout=5)  # attached, it would wait for `release`
    release.set()  # let the abandoned attempt end
    assert call in done
    with pytest.raises(mqkit.PublishTimeoutError, match=r"p did not complete within 0\.2s"):
        call.result()


async def test_detached_returns_the_attempts_result() -> None:
    async def quick() -> int:
        return 7

    assert await within_deadline(quick, timeout=1, what="publish", detached=True) == 7
