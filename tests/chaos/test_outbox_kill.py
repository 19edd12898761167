"""Chaos 7: the outbox relay SIGKILLed 20 times between the broker's confirm and the mark.

10,000 rows written in business transactions on PostgreSQL (plus 500 rolled back), relayed
to Redis Streams by `OutboxRelay` processes, each killed right after a confirmed batch and
before its rows are marked. Every id arrives; only ids of batches confirmed before a kill
arrive twice; each key's messages first arrive in the order they were written; with the
idempotency middleware the handler's effects number exactly 10,000."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

import mqkit
from mqkit import outbox
from mqkit.idempotency import MemoryStore, idempotent
from tests.support.chaos import Tally
from tests.support.databases import database
from tests.support.services import ROOT, URLS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

ROWS, KEYS, KILLS = 10_000, 50, 20

# Prints each confirmed batch's ids, then pauses before going on: the test kills it there.
RELAY = """
import asyncio, sys, mqkit
from mqkit.outbox import OutboxRelay
async def main():
    async def on_published(batch):
        sys.stdout.write("batch " + " ".join(m.id for m in batch) + "\\n")
        sys.stdout.flush()
        await asyncio.sleep(float(sys.argv[3]))
    async with mqkit.connect(sys.argv[2]) as broker:
        relay = OutboxRelay(sys.argv[1], broker, batch_size=100, on_published=on_published)
        print("ready", flush=True)
        await relay.run()
asyncio.run(main())
"""


def start_relay(db_url: str, broker_url: str, pause: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", RELAY, db_url, broker_url, str(pause)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )


async def read_line(process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout)
    except TimeoutError:
        process.kill()  # ends the read still blocked in its thread
        raise AssertionError(f"the relay printed nothing for {timeout:g}s") from None
    assert line, "the relay ended early"
    return line.decode().strip()


@pytest.mark.timeout(400)
async def test_relay_killed_between_confirm_and_mark(tmp_path: Path) -> None:
    topic = f"outbox-{uuid.uuid4().hex[:8]}"
    broker_url = URLS["redis"]
    async with database("postgresql", tmp_path) as db:
        written: list[mqkit.Message] = []
        for start in range(0, ROWS, 100):  # 100 business transactions of 100 rows
            with Session(db.sync) as session, session.begin():
                for i in range(start, start + 100):
                    written.append(outbox.add(session, topic, str(i), key=f"k{i % KEYS}"))
        for i in range(5):  # rolled back: these messages never exist
            with pytest.raises(RuntimeError), Session(db.sync) as session, session.begin():
                for j in range(100):
                    outbox.add(session, topic, f"rolled-back-{i}-{j}", key="k0")
                raise RuntimeError("business rule failed")

        async with mqkit.connect(broker_url) as broker:  # the consumer group exists first
            await (await broker.subscribe(topic, group="effects")).close()

        # Batches of 100, eight to a transaction: killed after its 1st, 5th or 9th confirmed
        # batch, so some kills leave a transaction half done and some follow a commit.
        confirmed_before_kill: set[str] = set()
        for kill in range(KILLS):
            relay = start_relay(db.url, broker_url, pause=0.2)
            assert await read_line(relay) == "ready"
            for _ in range((1, 5, 9)[kill % 3]):
                confirmed_before_kill.update((await read_line(relay)).split()[1:])
            relay.kill()
            relay.wait()
        relay = start_relay(db.url, broker_url, pause=0.0)
        assert await read_line(relay) == "ready"
        assert relay.stdout is not None  # keep reading, or the relay blocks on a full pipe
        threading.Thread(target=relay.stdout.read, daemon=True).start()
        for _ in range(600):  # up to 60 s for the last relay to drain the table
            if (await outbox.outbox_status(db.engine)).unsent == 0:
                break
            await asyncio.sleep(0.1)
        relay.terminate()
        relay.wait(30)
        assert (await outbox.outbox_status(db.engine)).unsent == 0

    # Consume everything: arrival order, and effects through the idempotency middleware.
    tally = Tally("outbox relay SIGKILLed 20x between confirm and mark (PostgreSQL -> Redis)")
    tally.sent = {m.id for m in written}
    arrivals: list[mqkit.Message] = []
    effects: Counter[str] = Counter()
    app = mqkit.App(broker_url)

    @app.subscriber(topic, group="effects", middleware=[idempotent(MemoryStore())])
    async def handle(message: mqkit.Message) -> None:
        effects[message.id] += 1

    async with (
        mqkit.connect(broker_url) as broker,
        await broker.subscribe(topic, group="order", start="earliest") as sub,
    ):
        distinct: set[str] = set()
        while len(distinct) < ROWS:
            d = await asyncio.wait_for(anext(sub), 30)
            arrivals.append(d.message)
            distinct.add(d.message.id)
            await d.ack()
        while True:  # the rest: duplicates
            try:
                d = await asyncio.wait_for(anext(sub), 1.0)
            except TimeoutError:
                break
            arrivals.append(d.message)
            await d.ack()
    async with app.running():
        await wait_until(lambda: len(effects) >= ROWS, 60, "effects")
        await asyncio.sleep(1.0)  # let any duplicate still in flight arrive
    tally.received = Counter(m.id for m in arrivals)
    tally.report(
        kills=KILLS,
        **{"effects with dedup": sum(effects.values())},
        **{"dedup skipped": app.subscribers[0].stats.duplicates},
    )
    assert tally.lost == 0
    assert not any(b.startswith(b"rolled-back") for b in (m.body for m in arrivals))
    duplicated = {i for i, n in tally.received.items() if n > 1}
    assert duplicated <= confirmed_before_kill  # only what a killed relay had confirmed
    assert duplicated  # the kills did land between confirm and commit
    assert sum(effects.values()) == ROWS and max(effects.values()) == 1
    position = {m.id: n for n, m in enumerate(written)}
    seen: set[str] = set()
    last: dict[str | None, int] = {}
    for m in arrivals:  # first arrivals of each key in the order they were written
        if m.id in seen:
            continue
        seen.add(m.id)
        assert position[m.id] > last.get(m.key, -1), f"key {m.key} out of order"
        last[m.key] = position[m.id]
