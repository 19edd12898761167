"""Chaos: Kafka's own transactions_test, on mqkit's exactly-once subscriber.

100,000 messages are seeded in an input topic; three copier processes (tests/chaos/copier.py,
one group, `exactly_once=True`) copy them to an output topic while a fault strikes three
times, once each time the output has grown by another 20%: all three copiers SIGKILLed
inside a commit (each kills itself between producing a transaction's records and
committing them; one that has no commit coming within 5 s is SIGKILLed from outside) and
started again; or the Kafka broker SIGKILLed and started again (where the aborted records
are counted, not required: a broker killed between two transactions leaves none). A
read_committed verifier (aiokafka itself, not mqkit's consumer) reads the output: 0
duplicates, 0 missing, and each partition's records in the order of the input's (a record
keeps its key, so it keeps its partition). In the kill case a read_uncommitted reader of
the same output counts more records than that: the aborted transactions' ones, which the
verifier rightly never saw."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

import mqkit
from tests.support.chaos import REPORTS
from tests.support.services import ROOT, URLS, services
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TOTAL = 100_000
PARTITIONS = 6
COPIERS = 3
FAULTS = 3
SLEEP = 0.002  # each copy's work: about 2,000 a second a copier, so faults land mid-copy


class Copier:
    """A copier process; what it logs goes to `log` (the case prints it when it fails)."""

    def __init__(self, url: str, source: str, target: str, group: str, log: Path) -> None:
        self.log = log
        self.where = (url, source, target, group)
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "tests.chaos.copier", url, source, target, group),
                    *("--concurrency", "4", "--sleep", str(SLEEP)),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.PIPE,
                stderr=err,
            )

    async def ready(self) -> Copier:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 120)
        assert line.strip() == b"ready", f"the copier did not start: {line!r}"
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    async def kill_in_commit(self) -> bool:
        """Whether it died inside a commit, as asked (else it was SIGKILLed after 5 s)."""
        self.process.send_signal(signal.SIGUSR1)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.process.wait), 5)
        except TimeoutError:
            self.kill()
            return False
        assert self.process.returncode == -signal.SIGKILL
        return True

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


async def start_copiers(url: str, source: str, target: str, group: str, logs: Path) -> list[Copier]:
    copiers = [Copier(url, source, target, group, logs / f"copier-{n}.log") for n in range(COPIERS)]
    return list(await asyncio.gather(*(c.ready() for c in copiers)))


class Reader:
    """Every record of a topic, per partition, in offset order, as `isolation` shows them."""

    def __init__(self, topic: str, isolation: str) -> None:
        self.topic, self.isolation = topic, isolation
        self.ids: dict[int, list[str]] = collections.defaultdict(list)
        self.count = 0
        self.last = time.monotonic()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=urlsplit(URLS["kafka"]).netloc,
            enable_auto_commit=False,
            isolation_level=self.isolation,
            auto_offset_reset="earliest",
            retry_backoff_ms=200,
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(self.topic, p) for p in range(PARTITIONS)])
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                except Exception:  # the broker bounced: aiokafka carries on from its position
                    await asyncio.sleep(0.5)
                    continue
                for tp, records in batches.items():
                    for r in records:
                        self.ids[tp.partition].append(dict(r.headers)["mqkit-id"].decode())
                    self.count += len(records)
                    self.last = time.monotonic()
        finally:
            await consumer.stop()

    async def until_quiet(self, at_least: int, quiet: float, timeout: float) -> None:
        await wait_until(
            lambda: self.count >= at_least and time.monotonic() - self.last > quiet,
            timeout,
            f"{at_least} records of {self.topic}, then {quiet}s of nothing",
        )


async def seed(topic: str, target: str) -> None:
    async with mqkit.connect(f"{URLS['kafka']}?partitions={PARTITIONS}") as broker:
        # Before any reader asks for it: Kafka would make it with one partition.
        await broker.ensure_topic(target)  # type: ignore[attr-defined]
        for i in range(0, TOTAL, 5000):
            await broker.publish_batch(
                [
                    mqkit.Message.create(topic, b"x" * 100, key=f"k{n % 101}", id=f"s{n}")
                    for n in range(i, i + 5000)
                ]
            )


async def copy_through(
    fault_name: str,
    fault: Callable[[list[Copier]], Awaitable[None]],
    logs: Path,
    detail: Callable[[], str] = lambda: "",
    *,
    kills_in_commit: bool = False,
) -> None:
    run = uuid.uuid4().hex[:8]
    source, target, group = f"eos-in-{run}", f"eos-out-{run}", f"copier-{run}"
    url = f"{URLS['kafka']}?partitions={PARTITIONS}"
    await seed(source, target)
    readers = [Reader(source, "read_committed"), Reader(target, "read_committed")]
    uncommitted = Reader(target, "read_uncommitted")
    tasks = [asyncio.create_task(r.run()) for r in [*readers, uncommitted]]
    seeded, verifier = readers
    copiers: list[Copier] = []
    started = time.monotonic()
    try:
        copiers = await start_copiers(url, source, target, group, logs)
        for k in range(1, FAULTS + 1):
            await verifier.until_quiet(k * TOTAL // 5, quiet=0.0, timeout=300)
            await fault(copiers)
        await verifier.until_quiet(TOTAL, quiet=5.0, timeout=600)
        await seeded.until_quiet(TOTAL, quiet=0.0, timeout=60)
        await uncommitted.until_quiet(TOTAL, quiet=2.0, timeout=60)
    except BaseException:
        print(f"read_committed {verifier.count}, read_uncommitted {uncommitted.count}")
        for copier in copiers:
            if copier.process.poll() is None:
                copier.process.send_signal(signal.SIGUSR2)
        await asyncio.sleep(1)
        for log in sorted(logs.glob("copier-*.log")):  # what the copiers said, to tell why
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for copier in copiers:
            copier.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    seconds = time.monotonic() - started

    copied = collections.Counter(i for ids in verifier.ids.values() for i in ids)
    duplicated = sum(n - 1 for n in copied.values())
    missing = TOTAL - len(copied)
    out_of_order = [p for p in range(PARTITIONS) if verifier.ids[p] != seeded.ids[p]]
    aborted = uncommitted.count - verifier.count
    line = (
        f"exactly-once copy of {TOTAL}, {FAULTS}x {fault_name}: read_committed sees "
        f"{verifier.count} ({len(copied)} distinct), duplicated {duplicated}, missing "
        f"{missing}, partitions out of order {len(out_of_order)}; read_uncommitted sees "
        f"{uncommitted.count} ({aborted} aborted); {seconds:.0f}s"
        + (f"; {detail()}" if detail() else "")
    )
    print(f"\nCHAOS {line}")
    REPORTS.append(line)
    assert (duplicated, missing, out_of_order) == (0, 0, [])
    if kills_in_commit:
        assert aborted > 0, "no kill landed inside a transaction: the case proved nothing"


@pytest.mark.timeout(900)
async def test_exactly_once_copy_survives_copiers_killed(tmp_path: Path) -> None:
    in_commit: list[bool] = []

    async def kill_all(copiers: list[Copier]) -> None:
        in_commit.extend(await asyncio.gather(*(c.kill_in_commit() for c in copiers)))
        copiers[:] = await start_copiers(*copiers[0].where, tmp_path)

    await copy_through(
        "all copiers SIGKILLed",
        kill_all,
        tmp_path,
        lambda: f"{sum(in_commit)} of {len(in_commit)} kills inside a commit",
    )


@pytest.mark.timeout(900)
async def test_exactly_once_copy_survives_broker_bounces(tmp_path: Path) -> None:
    async def bounce(_: list[Copier]) -> None:
        await services("kill", "kafka")
        await services("up", "kafka")

    await copy_through("Kafka SIGKILLed and restarted", bounce, tmp_path)
