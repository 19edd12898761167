"""Chaos: Kafka's own transactions_test, on mqkit's exactly-once subscriber.

100,000 messages are seeded in an input topic; three copier processes (tests/chaos/copier.py,
one group, `exactly_once=True`) copy them to an output topic while a fault strikes three
times, once each time the output has grown by another 20%: all three copiers SIGKILLed
inside a commit (each kills itself between producing a transaction's records and
committing them; one that has no commit coming within 5 s is SIGKILLed from outside) and
started again; or the Kafka broker SIGKILLed and started again (where the aborted records
are counted, not required: a broker killed between two transactions leaves none); or, on
the three-node cluster, the broker leading the output's partition 0 SIGKILLed and started
again; or one copier made a zombie, SIGSTOPped inside a commit until the others have taken
over all of its partitions, then continued: its commit must fail (this case's rounds come
every 5%, the copy paced slower until they are done, so that each finds copying to do). A
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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

import mqkit
from tests.support.chaos import REPORTS
from tests.support.services import CLUSTER_URLS, ROOT, URLS, services
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TOTAL = 100_000
PARTITIONS = 6
COPIERS = 3
FAULTS = 3
SLEEP = 0.002  # each copy's work: about 2,000 a second a copier, so faults land mid-copy


class Copier:
    """A copier process; what it logs goes to `log` (the case prints it when it fails)."""

    def __init__(
        self, url: str, source: str, target: str, group: str, log: Path, pace: Path
    ) -> None:
        self.log, self.pace = log, pace
        self.where = (url, source, target, group)
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "tests.chaos.copier", url, source, target, group),
                    *("--concurrency", "4", "--pace", str(pace)),
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

    def stopped(self) -> bool:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] == "T"

    def said(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

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


async def start_copiers(
    url: str, source: str, target: str, group: str, logs: Path, pace: Path
) -> list[Copier]:
    copiers = [
        Copier(url, source, target, group, logs / f"copier-{n}.log", pace) for n in range(COPIERS)
    ]
    return list(await asyncio.gather(*(c.ready() for c in copiers)))


def set_pace(pace: Path, sleep: float) -> None:
    """Each copy's work from now on, for every copier (which reads it twice a second)."""
    written = pace.with_suffix(".new")
    written.write_text(str(sleep))
    written.replace(pace)  # at once: a copier never reads it half written


class Reader:
    """Every record of a topic, per partition, in offset order, as `isolation` shows them."""

    def __init__(self, servers: str, topic: str, isolation: str) -> None:
        self.servers, self.topic, self.isolation = servers, topic, isolation
        self.ids: dict[int, list[str]] = collections.defaultdict(list)
        self.count = 0
        self.last = time.monotonic()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
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


@dataclass
class Copy:
    """What a fault sees of the copy under way."""

    seeded: Reader
    verifier: Reader
    target: str
    group: str
    pace: Path

    def behind(self, partition: int) -> bool:
        return len(self.verifier.ids[partition]) < len(self.seeded.ids[partition])

    async def progress(self, timeout: float, what: str) -> float:
        """Seconds until every partition not fully copied has more of its copy than now."""
        now = {p: len(self.verifier.ids[p]) for p in range(PARTITIONS) if self.behind(p)}
        return await wait_until(
            lambda: all(len(self.verifier.ids[p]) > n for p, n in now.items()), timeout, what
        )

    async def stable(self, members: int, timeout: float) -> float:
        """Seconds until the copiers' group is Stable with `members` members: a member
        stopped during a rebalance holds it up for the rebalance timeout (5 minutes), not
        the session timeout that the zombie case is about."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.verifier.servers)
        await admin.start()
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout:
                with contextlib.suppress(KafkaError):
                    (response,) = await admin.describe_consumer_groups([self.group])
                    _, _, state, _, _, now = response.groups[0]
                    if state == "Stable" and len(now) == members:
                        return time.monotonic() - started
                await asyncio.sleep(0.2)
        finally:
            await admin.close()
        raise AssertionError(f"group {self.group} Stable with {members}: not within {timeout}s")


Fault = Callable[[list[Copier], Copy], Awaitable[None]]


async def seed(url: str, topic: str, target: str) -> None:
    async with mqkit.connect(url) as broker:
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
    fault: Fault,
    logs: Path,
    detail: Callable[[], str] = lambda: "",
    *,
    kafka: str = URLS["kafka"],
    sleep: float = SLEEP,
    every: int = TOTAL // 5,
    kills_in_commit: bool = False,
) -> None:
    run = uuid.uuid4().hex[:8]
    source, target, group = f"eos-in-{run}", f"eos-out-{run}", f"copier-{run}"
    url = f"{kafka}?partitions={PARTITIONS}"
    await seed(url, source, target)
    servers = urlsplit(kafka).netloc
    readers = [Reader(servers, source, "read_committed"), Reader(servers, target, "read_committed")]
    uncommitted = Reader(servers, target, "read_uncommitted")
    tasks = [asyncio.create_task(r.run()) for r in [*readers, uncommitted]]
    seeded, verifier = readers
    copiers: list[Copier] = []
    pace = logs / "pace"
    set_pace(pace, sleep)
    started = time.monotonic()
    try:
        copiers = await start_copiers(url, source, target, group, logs, pace)
        for k in range(1, FAULTS + 1):
            await verifier.until_quiet(k * every, quiet=0.0, timeout=300)
            await fault(copiers, Copy(seeded, verifier, target, group, pace))
        await verifier.until_quiet(TOTAL, quiet=5.0, timeout=600)
        await seeded.until_quiet(TOTAL, quiet=0.0, timeout=60)
        await uncommitted.until_quiet(TOTAL, quiet=2.0, timeout=60)
    except BaseException:
        print(f"read_committed {verifier.count}, read_uncommitted {uncommitted.count}; {detail()}")
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
    for p in out_of_order:  # where the copy went wrong: what a fix needs to know first
        print(f"partition {p}: {diverged(seeded.ids[p], verifier.ids[p])}")
    assert (duplicated, missing, out_of_order) == (0, 0, [])
    if kills_in_commit:
        assert aborted > 0, "no kill landed inside a transaction: the case proved nothing"


def diverged(seeded: list[str], copied: list[str]) -> str:
    """Where a partition's copy first differs from its input, and the run copied twice."""
    at = next((n for n, (a, b) in enumerate(zip(seeded, copied, strict=False)) if a != b), None)
    if at is None:
        return f"input {len(seeded)}, copy {len(copied)}, equal as far as both go"
    first = seeded.index(copied[at]) if copied[at] in seeded else -1
    return (
        f"input {len(seeded)}, copy {len(copied)}; copy position {at} holds input position "
        f"{first} ({copied[at]}), not {seeded[at]}"
    )


@pytest.mark.timeout(900)
async def test_exactly_once_copy_survives_copiers_killed(tmp_path: Path) -> None:
    in_commit: list[bool] = []

    async def kill_all(copiers: list[Copier], *_: object) -> None:
        in_commit.extend(await asyncio.gather(*(c.kill_in_commit() for c in copiers)))
        copiers[:] = await start_copiers(*copiers[0].where, tmp_path, copiers[0].pace)

    await copy_through(
        "all copiers SIGKILLed",
        kill_all,
        tmp_path,
        lambda: f"{sum(in_commit)} of {len(in_commit)} kills inside a commit",
        kills_in_commit=True,
    )


@pytest.mark.timeout(900)
async def test_exactly_once_copy_survives_broker_bounces(tmp_path: Path) -> None:
    async def bounce(*_: object) -> None:
        await services("kill", "kafka")
        await services("up", "kafka")

    await copy_through("Kafka SIGKILLed and restarted", bounce, tmp_path)


# The two ways a zombie's commit fails, as it logs them.
SAID = {"fenced": "was fenced", "timed out": "failed (TimeoutError"}


@pytest.mark.timeout(900)
async def test_exactly_once_copy_fences_a_zombie(tmp_path: Path) -> None:
    """The copier that stopped inside a commit is still in the middle of that transaction
    when it goes on: the others took its partitions meanwhile and started their producers
    with its transactional ids, which aborted it. The commit it goes on to make must fail
    (fenced by Kafka, or timed out by its own clock, which ran on while it was stopped), it
    must drop the partition rather than start its producer again (which would fence the new
    owner), and nothing it had produced may be seen."""
    zombies: list[str] = []

    async def zombie(copiers: list[Copier], copy: Copy) -> None:
        # Each member copying, with its partitions' producers started and commits under way.
        await copy.stable(COPIERS, 120)
        await copy.progress(120, "every copier copying again")
        # The zombie is the first copier, from a new one each round, found inside a commit
        # (one whose partitions were all copied already has none coming).
        for n in range(2 * COPIERS):
            copier = copiers[(len(zombies) + n) % COPIERS]
            said = {how: copier.said(text) for how, text in SAID.items()}
            copier.process.send_signal(signal.SIGHUP)
            with contextlib.suppress(AssertionError):
                await wait_until(copier.stopped, 5, "the copier stopped inside a commit")
                break
        else:
            raise AssertionError("no copier stopped inside a commit")
        # Stopped, it commits nothing: once every partition not fully copied has grown, the
        # others own all of its partitions, and each new owner fenced its producer first.
        took = await copy.progress(120, "the other copiers took over every partition")
        copier.process.send_signal(signal.SIGCONT)
        await wait_until(
            lambda: any(copier.said(text) > said[how] for how, text in SAID.items()),
            60,
            "the zombie's commit failed",
        )
        ended = ", ".join(f"{copier.said(t) - said[how]} {how}" for how, t in SAID.items())
        zombies.append(f"copier {copiers.index(copier)}, taken over in {took:.0f}s, then {ended}")
        if len(zombies) == FAULTS:
            set_pace(copy.pace, 0.0)  # the rounds are done: copy the rest at full speed

    await copy_through(
        "one copier SIGSTOPped until taken over, then continued",
        zombie,
        tmp_path,
        lambda: "zombies stopped inside a commit: " + "; ".join(zombies),
        # Each round's zombie must be found inside a commit, with copying left to do, however
        # long its takeover takes (11-54 s seen): the rounds begin early, and the copy is slow
        # until they are done.
        sleep=10 * SLEEP,
        every=TOTAL // 20,
    )


@pytest.mark.cluster
@pytest.mark.timeout(900)
async def test_exactly_once_copy_survives_cluster_leader_bounces(tmp_path: Path) -> None:
    killed: list[str] = []

    async def bounce(_: list[Copier], copy: Copy) -> None:
        killed.append(await services("kill", "kafka-cluster", f"leader:{copy.target}:0"))
        await services("up", "kafka-cluster")

    await copy_through(
        "the leader of the output's partition 0 SIGKILLed and restarted",
        bounce,
        tmp_path,
        lambda: "killed nodes " + ",".join(killed),
        kafka=CLUSTER_URLS["kafka-cluster"],
    )
