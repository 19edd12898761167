"""The outbox relay's throughput next to the raw client's batched publishes, and what writing
to the outbox adds to a business transaction.

    python -m benchmarks.outbox --db postgresql://mqkit:mqkit@127.0.0.1:5432/mqkit \\
        --url redis://127.0.0.1:6379/0 --url amqp://guest:guest@127.0.0.1:5672/mqkit-test \\
        --url kafka://127.0.0.1:9092 --rows 20000 --repeat 3

Relay: N rows are written first (not timed), then one OutboxRelay drains them (claim 500 with
FOR UPDATE SKIP LOCKED, publish with confirms, delete), timed from the first claim to the
empty table. Raw: the broker's own client publishing the same number of 100-byte messages in
batches of 500 (benchmarks/raw.py; none for memory://, which `--url memory://` adds to show
the database side alone). Keyed: mqkit's own `publish_batch` of the relay's messages (100
keys) in batches of 500, which bounds what the relay can reach on that broker. All in the
same run, alternating, median of --repeat.
Write overhead: transactions that insert one business row, with and without `outbox.add`,
then the same with the NOTIFY trigger dropped.
Everything happens in a scratch schema that is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from rich.console import Console
from rich.table import Table
from sqlalchemy import Column, Integer, MetaData, String, create_engine, insert, text
from sqlalchemy import Table as SqlTable
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

import mqkit
from benchmarks.raw import BODY, for_url
from mqkit import outbox
from mqkit.outbox.schema import create_all
from mqkit.sql import async_url, row_of

BATCH = 500


def scoped(url: str, schema: str) -> str:
    """The database URL with the scratch schema first on the search path."""
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


async def relay_rate(db_url: str, broker_url: str, rows: int) -> float:
    engine = create_async_engine(async_url(db_url))
    sync = create_engine(async_url(db_url))
    topic = f"bench-outbox-{uuid.uuid4().hex[:8]}"
    with sync.begin() as conn:
        for start in range(0, rows, 1000):
            conn.execute(
                outbox.outbox.insert(),
                [
                    row_of(mqkit.Message.create(topic, BODY, key=f"k{i % 100}"))
                    for i in range(start, min(rows, start + 1000))
                ],
            )
    async with mqkit.connect(broker_url) as broker:
        await (await broker.subscribe(topic, group="bench")).close()  # RabbitMQ: a queue
        relay = outbox.OutboxRelay(engine, broker, batch_size=BATCH)
        started = time.perf_counter()
        relayed = await relay.drain()
        elapsed = time.perf_counter() - started
    assert relayed == rows, (relayed, rows)
    await engine.dispose()
    sync.dispose()
    return rows / elapsed


async def keyed_rate(broker_url: str, rows: int) -> float:
    topic = f"bench-keyed-{uuid.uuid4().hex[:8]}"
    messages = [mqkit.Message.create(topic, BODY, key=f"k{i % 100}") for i in range(rows)]
    async with mqkit.connect(broker_url) as broker:
        await (await broker.subscribe(topic, group="bench")).close()
        started = time.perf_counter()
        for i in range(0, rows, BATCH):
            await broker.publish_batch(messages[i : i + BATCH])
        return rows / (time.perf_counter() - started)


async def raw_rate(broker_url: str, rows: int) -> float | None:
    if broker_url.startswith("memory:"):
        return None
    raw = for_url(broker_url)
    try:
        rate, _ = await raw.batched(rows, BATCH)
        return float(rate)
    finally:
        await raw.close()


def write_overhead(db_url: str, transactions: int) -> tuple[float, float]:
    """Business transactions per second: one INSERT, and the same plus outbox.add."""
    engine = create_engine(async_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_orders"))
    orders = SqlTable(
        "bench_orders",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("customer", String(64)),
    )
    orders.metadata.create_all(engine)
    rates = []
    for with_outbox in (False, True, False, True):
        started = time.perf_counter()
        for i in range(transactions):
            with Session(engine) as session, session.begin():
                session.execute(insert(orders).values(customer=f"c{i}"))
                if with_outbox:
                    outbox.add(session, "orders", BODY, key=f"c{i}")
        rates.append((with_outbox, transactions / (time.perf_counter() - started)))
    engine.dispose()
    plain = statistics.median(r for w, r in rates if not w)
    with_box = statistics.median(r for w, r in rates if w)
    return plain, with_box


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="a PostgreSQL URL")
    parser.add_argument("--url", action="append", required=True, help="a broker (repeatable)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--transactions", type=int, default=2_000)
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(async_url(args.db))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    db = scoped(args.db, schema)
    engine = create_async_engine(async_url(db))
    async with engine.begin() as conn:
        await conn.run_sync(create_all)
    await engine.dispose()
    console = Console()
    table = Table(
        "broker", "relay msg/s", "raw batched msg/s", "ratio", "mqkit keyed publish_batch msg/s"
    )
    try:
        for url in args.url:
            relay, raw, keyed = [], [], []
            for _ in range(args.repeat):  # alternate, so drift hits them all the same
                raw.append(await raw_rate(url, args.rows))
                relay.append(await relay_rate(db, url, args.rows))
                keyed.append(await keyed_rate(url, args.rows))
            r, k = statistics.median(relay), statistics.median(keyed)
            w = None if None in raw else statistics.median(x for x in raw if x is not None)
            table.add_row(
                url.split("://")[0], f"{r:,.0f}", "-" if w is None else f"{w:,.0f}",
                "-" if w is None else f"{r / w:.2f}x", f"{k:,.0f}",
            )  # fmt: skip
            console.print(f"{url.split('://')[0]}: relay {relay}, raw {raw}, keyed {keyed}")
        plain, with_box = write_overhead(db, args.transactions)
        with admin.begin() as conn:
            conn.execute(text(f"DROP TRIGGER mqkit_outbox_notify ON {schema}.mqkit_outbox"))
        plain_quiet, with_box_quiet = write_overhead(db, args.transactions)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    console.print(table)
    extra_ms = (1 / with_box - 1 / plain) * 1000
    console.print(
        f"business transaction, 1 INSERT: {plain:,.0f}/s; with outbox.add: {with_box:,.0f}/s "
        f"({extra_ms:+.2f} ms per transaction)"
    )
    quiet_ms = (1 / with_box_quiet - 1 / plain_quiet) * 1000
    console.print(
        f"without the NOTIFY trigger: {plain_quiet:,.0f}/s; with outbox.add: "
        f"{with_box_quiet:,.0f}/s ({quiet_ms:+.2f} ms per transaction)"
    )


if __name__ == "__main__":
    asyncio.run(main())
