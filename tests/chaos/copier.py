"""A copier process for the exactly-once cases: an mqkit App whose exactly-once subscriber
copies every message of one topic to another, id, key and body kept.

    python -m tests.chaos.copier URL IN OUT GROUP [--concurrency N] [--pace FILE]

`--pace` names a file that holds each handler's work, in seconds, read again twice a
second: it paces the copy, so that the faults of a case land while transactions are under
way rather than after everything was copied; a case whose faults are done may speed it up.

SIGUSR1 arms a SIGKILL inside the next commit (within 4 s; a case that waits 5 s knows the
arm lapsed if nothing happened by then): the process kills itself once a transaction
has produced its records and before it commits them, which an outside SIGKILL at a random
moment hits only now and then (the window is a round trip of every five). That is the
moment Kafka's transactions exist for: the case then sees those records in the log, aborted.
SIGHUP arms a SIGSTOP at the same moment instead: the zombie case's copier, which the group
gives up on while it is stopped and which, once continued, goes on to commit.
SIGUSR2 prints every task's stack to stderr (for a case that failed, to tell why).

Prints "ready" once subscribed; SIGTERM stops it gracefully, SIGKILL is what the cases do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

import mqkit

_commit = AIOKafkaProducer.commit_transaction
ARMED_FOR = 4.0
_armed: tuple[signal.Signals, float] | None = None  # what to send itself in a commit, until


async def _commit_or_die(self: AIOKafkaProducer) -> Any:
    global _armed
    if _armed is not None:
        (what, until), _armed = _armed, None
        if time.monotonic() < until:
            os.kill(os.getpid(), what)
    return await _commit(self)


def _stacks(broker: mqkit.Broker) -> None:
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}:", file=sys.stderr)
        task.print_stack(limit=8, file=sys.stderr)
    for sub in getattr(broker, "subscriptions", ()):
        print(f"subscription {sub!r}: {vars(sub)}", file=sys.stderr)
        consumer = getattr(sub, "_consumer", None)
        if consumer is not None:
            assignment = consumer.assignment()
            state = consumer._subscription.subscription.assignment
            print(f"  assignment {assignment}, paused {consumer.paused()}", file=sys.stderr)
            for tp in assignment:
                tps = state.state_value(tp)
                print(f"  {tp}: {vars(tps)}", file=sys.stderr)
        transactions = getattr(sub, "transactions", None)
        if transactions is not None:
            print(f"  transactions {vars(transactions)}", file=sys.stderr)
        for tp, offsets in getattr(sub, "_offsets", {}).items():
            print(f"  offsets {tp}: {vars(offsets)}", file=sys.stderr)
    sys.stderr.flush()


def _arm(what: signal.Signals) -> None:
    global _armed
    _armed = (what, time.monotonic() + ARMED_FOR)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("group")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pace", type=Path)
    args = parser.parse_args()
    # What the exactly-once subscriber says of its transactions (fenced, failed, settled) is
    # what a failed case needs to tell why, and what the zombie case waits for.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mqkit.kafka").setLevel(logging.INFO)
    app = mqkit.App(args.url, shutdown_timeout=5)
    pace = float(args.pace.read_text()) if args.pace is not None else 0.0

    @app.subscriber(args.source, group=args.group, concurrency=args.concurrency, exactly_once=True)
    async def copy(ctx: mqkit.Context, message: mqkit.Message) -> None:
        if pace:
            await asyncio.sleep(pace)
        await ctx.publish(args.target, message.body, key=message.key, id=message.id)

    AIOKafkaProducer.commit_transaction = _commit_or_die
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _arm, signal.SIGKILL)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _arm, signal.SIGSTOP)

    async def follow_pace() -> None:
        nonlocal pace
        while args.pace is not None:
            pace = float(args.pace.read_text())
            await asyncio.sleep(0.5)

    following = asyncio.create_task(follow_pace())
    async with app.running():
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, _stacks, app.broker)
        print("ready", flush=True)
        await stop.wait()
    following.cancel()


if __name__ == "__main__":
    asyncio.run(main())
