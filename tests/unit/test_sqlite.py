"""What only the embedded sqlite backend must show: several processes on one file,
durability across restarts, leases of dead consumers, retention."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mqkit
from tests.support.waiting import drain, receive

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_messages_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    async with mqkit.connect(url) as broker:
        await broker.subscribe("t", group="g")  # left open: closed with the broker
        ids = {(await broker.publish("t", f"m{i}")).id for i in range(50)}
    async with mqkit.connect(url) as broker, await broker.subscribe("t", group="g") as sub:
        got = await receive(sub, 50)
    assert {d.message.id for d in got} == ids


async def test_missing_directory_names_the_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'q.db'}"
    with pytest.raises(mqkit.BrokerUnavailableError, match=r"cannot open sqlite:///.*does not"):
        await mqkit.connect(url).start()


def test_relative_and_absolute_paths() -> None:
    from mqkit.backends.sqlite import database_path

    assert database_path("sqlite:///rel/q.db") == Path("rel/q.db")
    assert database_path("sqlite:////abs/q.db") == Path("/abs/q.db")
    with pytest.raises(mqkit.ConfigurationError):
        database_path("sqlite://host/q.db")


CONSUMER = """
import asyncio, sys, mqkit
async def main(url, n):
    async with mqkit.connect(url) as broker:
        async with await broker.subscribe("work", group="shared", prefetch=20) as sub:
            print("ready", flush=True)
            idle = 0
            while True:
                try:
                    d = await asyncio.wait_for(anext(sub), 2.0)
                except TimeoutError:
                    return
                print(d.message.id, flush=True)
                await d.ack()
asyncio.run(main(sys.argv[1], 0))
"""


async def test_competing_consumers_in_separate_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe("work", group="shared")).close()  # create the group
        procs = [run_python(CONSUMER, url) for _ in range(3)]
        for p in procs:
            assert p.stdout is not None
            assert (await asyncio.to_thread(p.stdout.readline)).strip() == b"ready"
        batch = [mqkit.Message.create("work", f"m{i}") for i in range(3000)]
        for i in range(0, 3000, 100):
            await broker.publish_batch(batch[i : i + 100])
            await asyncio.sleep(0.005)
    outputs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
    shares = [out.decode().split() for out, _ in outputs]  # "ready" was read above
    seen = [i for share in shares for i in share]
    assert sorted(seen) == sorted(m.id for m in batch), "every message once across processes"
    assert sum(1 for s in shares if s) >= 2, [len(s) for s in shares]


WORKER = """
import asyncio, os, mqkit
app = mqkit.App()
log = open(os.environ["DONE_FILE"], "a")

@app.subscriber("jobs", group="workers", concurrency=4)
async def work(message: mqkit.Message) -> None:
    await asyncio.sleep(0.01)
    log.write(message.id + "\\n")
    log.flush()
"""


def start_worker(tmp_path: Path, url: str, done: Path) -> subprocess.Popen[bytes]:
    """`mqkit run worker:app` in a process of its own, as a user would start it."""
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MQKIT_URL": url, "DONE_FILE": str(done)}
    return subprocess.Popen(
        [sys.executable, "-m", "mqkit", "run", "worker:app", "--log-level", "WARNING"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_sigkilled_worker_loses_nothing(tmp_path: Path) -> None:
    """A worker killed with SIGKILL mid-run: its leased messages come back when the leases
    expire, and a second worker handles everything."""
    url = f"sqlite:///{tmp_path / 'q.db'}?lease=1s"
    done = tmp_path / "done.txt"
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe("jobs", group="workers")).close()
        batch = [mqkit.Message.create("jobs", f"j{i}") for i in range(400)]
        await broker.publish_batch(batch)
    first = start_worker(tmp_path, url, done)
    async with asyncio.timeout(30):
        while not done.exists() or len(done.read_text().split()) < 100:
            await asyncio.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    handled_before = set(done.read_text().split())
    assert 100 <= len(handled_before) < 400
    second = start_worker(tmp_path, url, done)
    try:
        async with asyncio.timeout(60):
            while set(done.read_text().split()) != {m.id for m in batch}:
                await asyncio.sleep(0.05)
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 15)
    lines = done.read_text().split()
    duplicates = len(lines) - len(set(lines))
    print(
        f"\nsqlite SIGKILL: 400 published, {len(handled_before)} handled before the kill, "
        f"{len(set(lines))} handled in all, lost {400 - len(set(lines))}, "
        f"duplicated {duplicates}"
    )
    # Only what the dead worker had claimed (prefetch) can run twice.
    assert duplicates <= 20, duplicates
    assert second.returncode == 0, second.stderr.read() if second.stderr else ""


async def test_sigterm_lets_in_flight_finish(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    done = tmp_path / "done.txt"
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe("jobs", group="workers")).close()
        await broker.publish_batch([mqkit.Message.create("jobs", f"j{i}") for i in range(2000)])
    worker = start_worker(tmp_path, url, done)
    async with asyncio.timeout(30):
        while not done.exists() or len(done.read_text().split()) < 50:
            await asyncio.sleep(0.02)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 15) == 0
    handled = done.read_text().split()
    async with mqkit.connect(url) as broker, await broker.subscribe("jobs", group="workers") as s:
        rest = await drain(s, idle=1.0)
    assert len(handled) == len(set(handled))
    remaining = [d.message.id for d in rest]
    assert set(handled).isdisjoint(remaining), "acked work must not come back"
    assert len(handled) + len(remaining) == 2000


async def test_retention_deletes_old_messages_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    async with mqkit.connect(f"sqlite:///{path}?retention=1s") as broker:
        await broker.publish("t", "old")

        def stored() -> int:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
                (n,) = db.execute("SELECT count(*) FROM mq_messages").fetchone()
            return int(n)

        assert stored() == 1
        async with asyncio.timeout(15):  # the retention loop runs every second here
            while stored():
                await asyncio.sleep(0.1)
        await broker.publish("t", "new")
        async with await broker.subscribe("t", group="g", start="earliest") as sub:
            got = await drain(sub, idle=0.3)
    assert [d.message.body for d in got] == [b"new"]


async def test_cross_process_wakeup_is_prompt(tmp_path: Path) -> None:
    """A consumer learns of another process's publish within a few polls (poll=5ms), not
    at the 0.2 s idle pace or a lease's: the median of 20 is well under 0.1 s."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    async with mqkit.connect(url) as consumer, await consumer.subscribe("t", group="g") as sub:
        publisher = run_python(
            "import sys, time, mqkit.sync\n"
            "with mqkit.sync.connect(sys.argv[1]) as b:\n"
            "    for _ in range(20):\n"
            "        b.publish('t', repr(time.time()))\n"
            "        time.sleep(0.05)\n",
            url,
        )
        latencies = []
        for _ in range(20):
            (d,) = await receive(sub, 1, timeout=30)
            latencies.append(time.time() - float(d.message.body))
        await asyncio.to_thread(publisher.wait, 30)
    median = statistics.median(latencies)
    print(
        f"cross-process wake-up: median {median * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    assert median < 0.1, latencies


def test_database_stays_consistent(tmp_path: Path) -> None:
    path = tmp_path / "q.db"

    async def work() -> None:
        async with (
            mqkit.connect(f"sqlite:///{path}") as broker,
            await broker.subscribe("t", group="g") as sub,
        ):
            await broker.publish_batch([mqkit.Message.create("t", b"x") for _ in range(500)])
            await receive(sub, 500)

    asyncio.run(work())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT count(*) FROM mq_pending").fetchone() == (0,)
    conn.close()


@pytest.mark.parametrize(
    ("version", "dropped"), [(1, ["failed_at", "leased"]), (2, ["leased"])], ids=["1", "2"]
)
async def test_a_file_from_an_older_schema_is_upgraded_in_place(
    tmp_path: Path, version: int, dropped: list[str]
) -> None:
    """Files made before mq_pending.failed_at (schema 1) or mq_pending.leased (2) existed
    keep working, and keep their data."""
    db = tmp_path / "old.db"
    url = f"sqlite:///{db}"
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe("t", group="g")).close()
        sent = await broker.publish("t", b"from before")
    conn = sqlite3.connect(db)
    drops = "".join(f"ALTER TABLE mq_pending DROP COLUMN {c};" for c in dropped)
    conn.executescript(f"{drops} PRAGMA user_version={version};")
    conn.close()
    async with mqkit.connect(url) as broker, await broker.subscribe("t", group="g") as sub:
        delivery = await asyncio.wait_for(anext(sub), 20)
        assert delivery.message.id == sent.id
        assert (await broker.lag("t", "g")).in_flight == 1
        await delivery.nack()
        again = await asyncio.wait_for(anext(sub), 20)
        assert again.message.attempt == 2 and "mqkit-first-failed-at" in again.message.headers
        await again.ack()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    conn.close()


async def test_no_cursor_leaves_the_connection_thread(tmp_path: Path) -> None:
    """A cursor finalized on the event loop resets a statement the connection thread may be
    binding at that moment (SQLITE_MISUSE under concurrent publishes): calls that return a
    cursor get None, and the cursor is closed where it was made."""
    from mqkit.backends.sqlite.connection import Connection

    connection = Connection(tmp_path / "c.db", synchronous="NORMAL", busy_timeout=5)
    connection.start()
    made: list[sqlite3.Cursor] = []

    def select(conn: sqlite3.Connection) -> sqlite3.Cursor:
        made.append(conn.execute("SELECT 1"))
        return made[-1]

    assert await connection.call(select, write=False) is None
    assert await connection.call(select, write=True) is None
    with pytest.raises(sqlite3.ProgrammingError):  # closed on the connection thread
        made[0].fetchone()
    await connection.close()


async def test_an_idle_consumer_does_not_spin(tmp_path: Path) -> None:
    """A claim commits a write; when that woke the claim loop itself, an idle consumer
    claimed in a loop on a full core (92% of one measured). Now it sleeps between polls."""
    async with (
        mqkit.connect(f"sqlite:///{tmp_path / 'q.db'}") as broker,
        await broker.subscribe("t", group="g"),
    ):
        await asyncio.sleep(0.2)  # past start-up
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(1.0)
        share = (time.process_time() - cpu) / (time.monotonic() - wall)
    print(f"idle consumer: {share:.0%} of a core")
    assert share < 0.3
