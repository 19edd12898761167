"""A worker process for the chaos cases: an mqkit App that records every handler run.

    python -m tests.chaos.worker URL TOPIC GROUP LOG [--concurrency N] [--sleep S]
                                 [--effects DB_URL --effects-table NAME]

Each handler run appends the message id to LOG just before the handler returns (so a run
cut short by SIGKILL before that line is not counted, and one cut after it but before the
ack is: that is a duplicate the broker owes us). With --effects the handler also inserts the
id into a table in the same transaction as the idempotency mark (exactly-once effects).
Prints "ready" once subscribed; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from sqlalchemy import Column, MetaData, String, Table, insert

import mqkit
from mqkit.idempotency.sql import SqlStore


def effects_table(name: str) -> Table:
    return Table(name, MetaData(), Column("message_id", String(64), nullable=False))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("log")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--shutdown-timeout", type=float, default=10.0)
    parser.add_argument("--effects")
    parser.add_argument("--effects-table", default="chaos_effects")
    args = parser.parse_args()

    log = open(args.log, "a", buffering=1)  # noqa: SIM115 - for the process's life
    app = mqkit.App(args.url, shutdown_timeout=args.shutdown_timeout)
    middleware = []
    store: SqlStore | None = None
    table = effects_table(args.effects_table)
    if args.effects:
        store = SqlStore(args.effects)
        middleware.append(store.transactional())

    @app.subscriber(
        args.topic, group=args.group, concurrency=args.concurrency, middleware=middleware
    )
    async def handle(message: mqkit.Message, ctx: mqkit.Context) -> None:
        if args.sleep:
            await asyncio.sleep(args.sleep)
        if store is not None:
            await SqlStore.connection(ctx).execute(insert(table).values(message_id=message.id))
        log.write(f"{message.id}\n")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with app.running():
        print("ready", flush=True)
        await stop.wait()
    log.close()
    if store is not None:
        await store.close()
    print(f"stopped pid {os.getpid()}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
