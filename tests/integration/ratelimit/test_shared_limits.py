"""One limit shared through Redis by 3 worker processes (real Redis, Redis Streams broker):
the sum keeps to it as one process would. Then the same with the limit store unreachable:
paused (fail closed) or rate / workers each (fail open)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import mqkit
from tests.support.ratelimit import offer, per_second
from tests.support.services import ROOT, URLS

pytestmark = pytest.mark.slow


class Workers:
    def __init__(self, n: int, limits: str, topic: str, log: Path, *more: str) -> None:
        self.log = log
        key = f"key-{uuid.uuid4().hex[:8]}"  # one limit for all of them
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.ratelimit.worker",
                    URLS["redis"],
                    limits,
                    topic,
                    key,
                    str(log),
                    *more,
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.PIPE,
            )
            for _ in range(n)
        ]

    async def ready(self) -> None:
        for process in self.processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
            assert line.strip() == b"ready", line

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)

    def handled(self) -> dict[str, float]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return {i: float(t) for i, t in (line.split() for line in lines)}


async def run(
    tmp_path: Path, limits: str, seconds: float, *more: str
) -> tuple[list[str], dict[str, float], float]:
    """What was offered, when each was handled, and for how long it was offered. Handled
    means by the end of the offering: the workers go on with the backlog while they stop,
    for however long stopping takes on a loaded machine."""
    topic = f"shared-{uuid.uuid4().hex[:8]}"
    workers = Workers(3, limits, topic, tmp_path / "handled.log", *more)
    try:
        await workers.ready()
        async with mqkit.connect(URLS["redis"]) as broker:
            started = time.monotonic()
            sent = await offer(broker, topic, 1000, seconds)
            elapsed = time.monotonic() - started
            ended = time.time()
    finally:
        workers.stop()
    handled = {i: t for i, t in workers.handled().items() if t <= ended}
    return sent, handled, elapsed


async def test_three_processes_share_100_per_s(tmp_path: Path) -> None:
    limits = os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    sent, handled, elapsed = await run(tmp_path, limits, 6.0)
    windows = per_second(list(handled.values()))
    ideal = 10 + 100 * elapsed
    print(f"3 workers: offered {len(sent)}, handled {len(handled)}, ideal {ideal:.0f}, {windows}")
    assert set(handled) <= set(sent)
    assert all(n <= 110 for n in windows[1:]), windows
    assert abs(len(handled) - ideal) <= 0.05 * ideal


@pytest.mark.parametrize("outage", ["pause", "local"])
async def test_with_the_limit_store_unreachable(tmp_path: Path, outage: str) -> None:
    sent, handled, elapsed = await run(tmp_path, "redis://127.0.0.1:1/0", 4.0, outage, "3")
    print(f"store unreachable, {outage}: offered {len(sent)}, handled {len(handled)}")
    if outage == "pause":
        assert handled == {}
    else:  # each keeps to 100/3 per second (burst 10 // 3): about 100/s together
        windows = per_second(list(handled.values()))
        assert all(n <= 110 for n in windows[1:]), windows
        ideal = 100 * elapsed
        assert abs(len(handled) - ideal) <= 0.1 * ideal, (len(handled), ideal)
