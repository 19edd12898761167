"""Chaos 6: the embedded sqlite queue, its process SIGKILLed in the middle of 10,000 publishes:
every publish that returned is in the file, the file is intact, and it all reads back."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import mqkit
from tests.support.chaos import Tally
from tests.support.services import ROOT

pytestmark = pytest.mark.slow

PUBLISHER = """
import asyncio, sys, mqkit
async def main():
    async with mqkit.connect(sys.argv[1]) as broker:
        for i in range(10_000):
            # Batches of 1 to 20 as well as single publishes: both paths must be durable.
            if i % 3 == 0:
                batch = [mqkit.Message.create("orders", f"m{i}-{j}") for j in range(1 + i % 20)]
                await broker.publish_batch(batch)
                ids = [m.id for m in batch]
            else:
                ids = [(await broker.publish("orders", f"m{i}")).id]
            sys.stdout.write("".join(f"{x}\\n" for x in ids))
            sys.stdout.flush()
asyncio.run(main())
"""


@pytest.mark.parametrize("round_", range(3))
async def test_kill_during_publishes_keeps_every_returned_publish(
    tmp_path: Path, round_: int
) -> None:
    db = tmp_path / "queue.db"
    url = f"sqlite:///{db}"
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, url], cwd=ROOT, stdout=subprocess.PIPE
    )
    assert publisher.stdout is not None
    kill_at = random.Random(round_).randint(1_000, 9_000)
    returned: list[str] = []
    while len(returned) < kill_at:
        line = await asyncio.to_thread(publisher.stdout.readline)
        assert line, "the publisher ended early"
        returned.append(line.decode().strip())
    publisher.kill()
    publisher.wait()
    # What it wrote before it died but we had not read yet returned too: count it.
    rest = publisher.stdout.read().decode().split("\n")
    returned += [line for line in rest[:-1] if line]

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {row[0] for row in conn.execute("SELECT id FROM mq_messages")}
    conn.close()
    tally = Tally(f"sqlite kill -9 at publish {kill_at} (round {round_})", sent=set(returned))
    async with mqkit.connect(url) as broker, await broker.subscribe("orders", group="check") as sub:
        while True:
            try:
                delivery = await asyncio.wait_for(anext(sub), 1.0)
            except TimeoutError:
                break
            tally.received[delivery.message.id] += 1
            await delivery.ack()
    tally.report(stored=len(stored), integrity="ok")
    assert set(returned) <= stored
    assert tally.lost == 0 and tally.duplicated == 0
