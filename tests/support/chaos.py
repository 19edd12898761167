"""For the chaos cases: worker processes, killing things, and counting what was lost."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import mqkit
from tests.support.services import ROOT, services
from tests.support.waiting import wait_until

# Every case's counts, printed after the run by tests/chaos/conftest.py (CI shows them).
REPORTS: list[str] = []


class Worker:
    """`python -m tests.chaos.worker` in its own process."""

    def __init__(self, url: str, topic: str, group: str, log: Path, *extra: str) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.worker", url, topic, group, str(log), *extra],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    async def ready(self, timeout: float = 90) -> Worker:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)
        if line.strip() != b"ready":
            self.process.kill()
            _, err = self.process.communicate()
            raise AssertionError(f"worker did not start: {line!r} {err.decode()[-2000:]}")
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def handled(log: Path) -> collections.Counter[str]:
    """How often each id was handled, from a worker log (a torn last line is ignored)."""
    if not log.exists():
        return collections.Counter()
    lines = log.read_text().split("\n")
    return collections.Counter(line for line in lines[:-1] if line)


@dataclass
class Tally:
    """Sent vs handled, printed the same way by every case."""

    case: str
    sent: set[str] = field(default_factory=set)
    received: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def lost(self) -> int:
        return len(self.sent - self.received.keys())

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.received.values() if n > 1)

    def report(self, **more: object) -> str:
        extra = "".join(f", {k} {v}" for k, v in more.items())
        line = (
            f"{self.case}: sent {len(self.sent)}, handled {len(self.received)} distinct "
            f"({sum(self.received.values())} runs), lost {self.lost}, "
            f"duplicated {self.duplicated}{extra}"
        )
        print(f"\nCHAOS {line}")
        REPORTS.append(line)
        return line


@dataclass
class Received:
    """What a case's consumers received and when, against when each message's publish was
    confirmed: for the cases that time how soon consumption resumed after a fault."""

    tally: Tally
    confirmed: dict[str, float]
    at: list[tuple[float, str]] = field(default_factory=list)

    async def consume(self, sub: mqkit.Subscription) -> None:
        async for delivery in sub:
            self.tally.received[delivery.message.id] += 1
            self.at.append((time.monotonic(), delivery.message.id))
            await delivery.ack()

    async def drain(
        self,
        subs: list[mqkit.Subscription],
        publishing: Awaitable[int],
        fault: Awaitable[object],
        timeout: float = 180,
    ) -> int:
        """Consume on `subs` while `publishing` (which returns its failed attempts) and
        `fault` run; then until everything confirmed was received. Closes `subs`."""
        consumers = [asyncio.create_task(self.consume(s)) for s in subs]
        try:
            failures, _ = await asyncio.gather(publishing, fault)
            self.tally.sent = set(self.confirmed)
            sent, received = self.tally.sent, self.tally.received
            await wait_until(lambda: sent <= received.keys(), timeout, "all received")
        finally:
            for consumer in consumers:
                consumer.cancel()
            for sub in subs:
                await sub.close()
        return int(failures)

    def resumed_since(self, fault: float) -> float | None:
        """When (monotonic) the first message confirmed after `fault` was consumed after it:
        a consumer may see a message before its publisher has the confirmation."""
        after = [t for t, mid in self.at if t >= fault and self.confirmed.get(mid, 0) >= fault]
        return min(after) if after else None


async def published_for(url: str, topic: str, group: str, n: int) -> list[mqkit.Message]:
    """Create `group` (RabbitMQ keeps only what a queue holds), then publish n messages."""
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group=group)).close()
        batch = [mqkit.Message.create(topic, f"m{i}") for i in range(n)]
        await broker.publish_batch(batch)
    return batch


async def publish_all(
    broker: mqkit.Broker,
    topic: str,
    confirmed: dict[str, float],
    total: int,
    *,
    pace: float = 0.005,
    batch_size: int = 50,
    quota: Callable[[], int] = lambda: sys.maxsize,
) -> int:
    """Publish `total` messages in batches, each batch again (same ids) until it lands;
    records when each was confirmed. Returns how many publish attempts failed. The case
    paces it through `quota()`: no batch starts past that many messages."""
    failures = 0
    for i in range(0, total, batch_size):
        while i >= quota():
            await asyncio.sleep(0.02)
        batch = [mqkit.Message.create(topic, f"m{i + j}") for j in range(batch_size)]
        while True:
            try:
                await broker.publish_batch(batch)
                break
            except mqkit.BrokerUnavailableError:
                failures += 1
                await asyncio.sleep(0.2)
        now = time.monotonic()
        confirmed.update((m.id, now) for m in batch)
        await asyncio.sleep(pace)
    return failures


async def kill_and_start(service: str) -> float:
    """SIGKILL a broker and start it again; returns when it answers (monotonic time)."""
    await services("kill", service)
    await services("up", service)
    return time.monotonic()


@dataclass
class Failover:
    """What a failover case saw: the node killed, publish retries, how long consumption took
    to resume after the kill, and how many of the delayed messages never came."""

    node: str
    publish_retries: int
    resumed: float
    delayed_lost: int
    seconds: float

    def counts(self, **more: object) -> dict[str, object]:
        """For Tally.report, with `more` after the node killed."""
        return {
            "killed node": self.node,
            **more,
            "publish retries": self.publish_retries,
            "delayed lost": self.delayed_lost,
            "resumed after": f"{self.resumed:.1f}s",
            "total": f"{self.seconds:.0f}s",
        }


async def fail_over(
    broker: mqkit.Broker,
    topic: str,
    tally: Tally,
    total: int,
    kill: Callable[[], Awaitable[str]],
    restart: Callable[[], Awaitable[object]],
    *,
    delayed: int = 1_000,
    consumers: int = 3,
) -> Failover:
    """Publish `total` messages to `topic` while `consumers` of one group drain them; at a
    third, publish `delayed` more with a 3 s delay, `kill()` a node and, once consumption
    resumed, `restart()` it. Waits until everything sent was received, or 15 s passed
    without one more (a lost message never comes)."""
    confirmed: dict[str, float] = {}
    received = Received(tally, confirmed)
    delayed_ids: set[str] = set()
    killed = 0.0
    subs = [await broker.subscribe(topic, group="failover", prefetch=100) for _ in range(consumers)]

    def resumed() -> float | None:
        at = received.resumed_since(killed)
        return None if at is None else at - killed

    async def chaos() -> str:
        nonlocal killed
        await wait_until(lambda: len(confirmed) >= total // 3, 120, "a third published")
        batch = [mqkit.Message.create(topic, f"d{i}") for i in range(delayed)]
        delayed_ids.update(m.id for m in batch)
        await broker.publish_batch(batch, delay=3.0)
        now = time.monotonic()
        confirmed.update((m.id, now) for m in batch)
        node = await kill()
        killed = time.monotonic()
        await wait_until(lambda: resumed() is not None, 60, "consumption resumed")
        await restart()
        return node

    def settled() -> bool:
        quiet = bool(received.at) and time.monotonic() - received.at[-1][0] > 15
        return tally.sent <= tally.received.keys() or quiet

    tasks = [asyncio.create_task(received.consume(s)) for s in subs]
    started = time.monotonic()
    try:
        retries, node = await asyncio.gather(
            publish_all(broker, topic, confirmed, total, pace=0.02), chaos()
        )
        tally.sent = set(confirmed)
        await wait_until(settled, 180, "all received, or 15 s without one more")
    finally:
        for task in tasks:
            task.cancel()
        for sub in subs:
            await sub.close()
    return Failover(
        node=node,
        publish_retries=retries,
        resumed=resumed() or float("inf"),
        delayed_lost=len(delayed_ids - tally.received.keys()),
        seconds=time.monotonic() - started,
    )
