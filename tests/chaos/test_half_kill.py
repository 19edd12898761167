"""Chaos 8: 1,000 half messages; a third committed, a third rolled back, a third left unknown
by a producer SIGKILLed after its local transaction and before the second phase.

Nothing is visible before commit; committed ones arrive once; rolled-back ones never; the
unknown third is resolved by two checkers running at once: published (once) exactly where
the local transaction committed. One store per case, each with a different broker."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from mqkit_redis.half import RedisHalfStore

import mqkit
from mqkit.half import HalfChecker, Resolution, store_for
from tests.support.chaos import Tally
from tests.support.services import POSTGRES, ROOT, URLS
from tests.support.waiting import visible

pytestmark = pytest.mark.slow

N = 1_000

# argv: store URL, broker URL, topic, group, local database, count. Reads "go" before phase two.
PRODUCER = """
import asyncio, sqlite3, sys, mqkit
from mqkit.half import HalfProducer, store_for
from mqkit_redis.half import RedisHalfStore
store_url, broker_url, topic, group, local, n = sys.argv[1:7]
async def main():
    store = (RedisHalfStore(store_url, prefix=group + ":") if store_url.startswith("redis")
             else store_for(store_url))
    db = sqlite3.connect(local, isolation_level=None)
    async with mqkit.connect(broker_url) as broker:
        producer = HalfProducer(broker, store, group=group, check_after=0.5)
        halves = [await producer.prepare(topic, str(i), key=f"order-{i}") for i in range(int(n))]
        print("prepared", flush=True)
        sys.stdin.readline()
        for i, half in enumerate(halves):
            if i % 3 == 0:          # local transaction commits, then the half message
                db.execute("INSERT INTO orders VALUES (?)", (half.id,))
                await half.commit()
            elif i % 3 == 1:        # local transaction fails: roll back
                await half.rollback()
            elif i % 2 == 0:        # local transaction commits; second phase never comes
                db.execute("INSERT INTO orders VALUES (?)", (half.id,))
        print("phase two done", flush=True)
        await asyncio.sleep(3600)    # killed here
asyncio.run(main())
"""


CASES = {  # store -> broker
    "sqlite": "sqlite",
    "postgresql": "rabbitmq",
    "redis": "redis",
}


@pytest.mark.parametrize("store_name", list(CASES))
async def test_half_messages_with_the_producer_killed(tmp_path: Path, store_name: str) -> None:
    group = f"half-{uuid.uuid4().hex[:8]}"
    topic = f"half-{uuid.uuid4().hex[:8]}"
    store_url = {
        "sqlite": f"sqlite:///{tmp_path / 'half.db'}",
        "postgresql": POSTGRES,
        "redis": URLS["redis"],
    }[store_name]
    broker_name = CASES[store_name]
    broker_url = (
        f"sqlite:///{tmp_path / 'queue.db'}" if broker_name == "sqlite" else URLS[broker_name]
    )
    local = tmp_path / "local.db"
    sqlite3.connect(local, isolation_level=None).execute("CREATE TABLE orders (id TEXT)")

    async with mqkit.connect(broker_url) as broker:
        await (await broker.subscribe(topic, group="reader")).close()  # RabbitMQ: queue first
        producer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                PRODUCER,
                store_url,
                broker_url,
                topic,
                group,
                str(local),
                str(N),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert producer.stdout is not None and producer.stdin is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(producer.stdout.readline), 120)
            assert line == b"prepared\n", line
            before_commit = await visible(broker, topic, wait=1.0)
            producer.stdin.write(b"go\n")
            producer.stdin.flush()
            line = await asyncio.wait_for(asyncio.to_thread(producer.stdout.readline), 120)
            assert line == b"phase two done\n", line
        finally:
            producer.kill()
            producer.wait()

        def committed_locally(message: mqkit.Message) -> Resolution:
            with sqlite3.connect(local) as db:
                found = db.execute("SELECT 1 FROM orders WHERE id = ?", (message.id,)).fetchone()
            return Resolution.COMMIT if found else Resolution.ROLLBACK

        stores = [
            RedisHalfStore(store_url, prefix=group + ":")
            if store_name == "redis"
            else store_for(store_url)
            for _ in range(2)
        ]
        checkers = [
            HalfChecker(broker, s, committed_locally, group=group, batch_size=50) for s in stores
        ]
        await asyncio.sleep(0.6)  # the check timeout of the last prepared message

        async def check_all(checker: HalfChecker) -> None:
            while await checker.check_once():
                pass

        await asyncio.gather(*(check_all(c) for c in checkers))
        left = await stores[0].records(group)
        for s in stores:
            await s.close()
        arrived = before_commit + await visible(broker, topic, wait=2.0)

    committed_first = {i for i in range(N) if i % 3 == 0}
    unknown_committed = {i for i in range(N) if i % 3 == 2 and i % 2 == 0}
    tally = Tally(f"half messages, producer SIGKILLed ({store_name} store, {broker_name})")
    tally.sent = {str(i) for i in committed_first | unknown_committed}
    tally.received = Counter(m.body.decode() for m in arrived)
    tally.report(
        **{"visible before commit": len(before_commit)},
        **{
            "resolved by check-back": sum(c.stats.committed + c.stats.rolled_back for c in checkers)
        },
        **{
            "checker split": "/".join(
                str(c.stats.committed + c.stats.rolled_back) for c in checkers
            )
        },
    )
    assert before_commit == []
    assert left == []
    assert tally.duplicated == 0  # nothing published twice
    assert set(tally.received) == tally.sent  # none lost, none rolled back published
    unknown = sum(1 for i in range(N) if i % 3 == 2)
    assert sum(c.stats.committed + c.stats.rolled_back for c in checkers) == unknown
