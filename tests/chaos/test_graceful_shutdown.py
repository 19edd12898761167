"""SIGTERM: the worker stops fetching, lets in-flight handlers finish within its deadline,
acks what finished, and leaves the rest for the next worker. Nothing lost, nothing twice;
a handler still running at the deadline is cancelled and its message handled later."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from tests.support.chaos import Tally, Worker, handled, published_for
from tests.support.services import backend_url
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TOTAL = 200


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("sleep", "deadline"), [(0.2, 10.0), (10.0, 0.5)], ids=["finish", "past-deadline"]
)
@pytest.mark.parametrize("backend", ["sqlite", "redis", "rabbitmq", "kafka"])
async def test_sigterm_finishes_in_flight_work(
    backend: str, sleep: float, deadline: float, tmp_path: Path
) -> None:
    url = backend_url(backend, tmp_path)
    topic, group, log = f"chaos-term-{uuid.uuid4().hex[:8]}", "workers", tmp_path / "h.log"
    batch = await published_for(url, topic, group, TOTAL)
    tally = Tally(f"{backend} SIGTERM, handlers of {sleep:g}s, deadline {deadline:g}s")
    tally.sent = {m.id for m in batch}
    options = ["--concurrency", "8", "--sleep", str(sleep), "--shutdown-timeout", str(deadline)]

    first = await Worker(url, topic, group, log, *options).ready()
    if sleep < deadline:
        await wait_until(lambda: sum(handled(log).values()) >= 40, 60, "40 handled")
    else:
        await asyncio.sleep(1.0)  # 8 handlers running; none can finish before the deadline
    stopping = time.monotonic()
    code = first.stop(timeout=30)
    stopped_in = time.monotonic() - stopping
    at_stop = sum(handled(log).values())
    second = await Worker(url, topic, group, log, "--concurrency", "32").ready()
    try:
        await wait_until(lambda: tally.sent <= handled(log).keys(), 120, "all handled")
    finally:
        second.stop()
    tally.received = handled(log)
    tally.report(
        **{"exit code": code, "stopped in": f"{stopped_in:.1f}s", "handled at stop": at_stop}
    )
    assert code == 0
    if sleep > deadline:
        # It stopped at its deadline, not when its handlers would have finished (they had
        # 9 s left): 4 s of room for closing the broker on a loaded machine, and not one
        # of the running handlers completed.
        assert stopped_in < deadline + 4.0, stopped_in
        assert at_stop == 0
    else:
        assert stopped_in < deadline + 5
    assert tally.lost == 0 and tally.duplicated == 0
