"""One `mqkit run` process hosting subscribers, an outbox relay and a half-message checker
(app.add_service): all three work, and one SIGTERM stops them all within the deadline with
nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine

import mqkit
from mqkit import outbox
from mqkit.half import HalfProducer, store_for
from mqkit.outbox.schema import create_all
from tests.support.services import ROOT

APP = """
import os
import mqkit
from mqkit.half import HalfChecker, Resolution, store_for
from mqkit.outbox import OutboxRelay

app = mqkit.App(shutdown_timeout=5)
log = open(os.environ["HANDLED_LOG"], "a", buffering=1)


@app.subscriber("orders", group="billing")
async def bill(message: mqkit.Message) -> None:
    log.write(message.id + "\\n")


def check(message: mqkit.Message) -> Resolution:
    return Resolution.COMMIT  # the local transactions all went through


app.add_service(lambda broker: OutboxRelay(os.environ["OUTBOX_DB"], broker, poll_interval=0.1))
app.add_service(
    lambda broker: HalfChecker(
        broker, store_for(os.environ["HALF_STORE"]), check, group="orders", poll_interval=0.1
    )
)
"""


def _handled(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def test_one_process_runs_subscribers_relay_and_checker_and_stops_on_one_signal(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    db = f"sqlite:///{tmp_path / 'app.db'}"
    half = f"sqlite:///{tmp_path / 'half.db'}"
    log = tmp_path / "handled.log"
    (tmp_path / "combined.py").write_text(APP)
    engine = create_engine(db)
    with engine.begin() as conn:
        create_all(conn)  # what `mqkit outbox init` does
    engine.dispose()
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe("orders", group="billing")).close()  # the group exists
        with sqlite3.connect(tmp_path / "app.db") as conn:  # the business transaction
            from_outbox = [outbox.add(conn, "orders", f"o{i}").id for i in range(20)]
        # Prepared, then the producer "dies": only the checker can publish them.
        producer = HalfProducer(broker, store_for(half), group="orders", check_after=0)
        from_half = [(await producer.prepare("orders", f"h{i}")).id for i in range(10)]
        await producer.store.close()

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MQKIT_URL": url, "HANDLED_LOG": str(log),
           "OUTBOX_DB": db, "HALF_STORE": half}  # fmt: skip
    worker = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the process outlives it)
        [sys.executable, "-m", "mqkit", "run", "combined:app", "--shutdown-timeout", "5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            while not set(from_outbox + from_half) <= set(_handled(log)):
                assert worker.poll() is None, worker.communicate()[1].decode()
                await asyncio.sleep(0.05)
        stopping = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(worker.communicate, timeout=30)
        stopped_in = time.monotonic() - stopping
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err.decode()
    assert stopped_in < 5, stopped_in  # within the deadline: each service saw the stop
    assert b"Traceback" not in err
    handled = _handled(log)
    assert sorted(handled) == sorted(from_outbox + from_half)  # each once, none lost
    with sqlite3.connect(tmp_path / "app.db") as conn:
        assert conn.execute("SELECT count(*) FROM mqkit_outbox").fetchone() == (0,)
