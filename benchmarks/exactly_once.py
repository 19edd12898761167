"""What exactly-once costs on Kafka: a copy of one topic to another, three ways in one run.

    eval "$(scripts/services env)" && .venv/bin/python -m benchmarks.exactly_once \\
        [--messages 50000] [--repeat 3] [--loop asyncio|uvloop]

- raw: aiokafka alone, the transactional copy loop its docs show (read_committed consumer,
  `getmany` of up to 500, begin, `send_offsets_to_transaction`, a `send` per record,
  commit), the offsets sent before the records (aiokafka #1004).
- mqkit exactly-once: an App subscriber with `exactly_once=True` (concurrency 8) whose
  handler copies through `ctx.publish`.
- mqkit at-least-once: the same App without the option: each copy published at once, the
  offsets committed after.

Each copies `--messages` 100-byte messages seeded beforehand (6 partitions, keyed), timed
until the group has committed past all of them; the three take turns, `--repeat` times,
and the medians are printed with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata

import mqkit
from mqkit.cli import loops
from mqkit.cli.loops import Loop

PARTITIONS = 6


async def seed(url: str, n: int) -> tuple[str, str]:
    run = uuid.uuid4().hex[:8]
    source, target = f"bench-eos-in-{run}", f"bench-eos-out-{run}"
    async with mqkit.connect(f"{url}?partitions={PARTITIONS}") as broker:
        await broker.ensure_topic(target)  # type: ignore[attr-defined]
        for first in range(0, n, 5000):
            await broker.publish_batch(
                [
                    mqkit.Message.create(source, b"x" * 100, key=f"k{i % 101}")
                    for i in range(first, min(n, first + 5000))
                ]
            )
    return source, target


async def raw_copy(url: str, n: int) -> float:
    source, target = await seed(url, n)
    servers = urlsplit(url).netloc
    group = f"raw-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        transactional_id=f"raw-copier-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
        acks="all",
    )
    await consumer.start()
    await producer.start()
    copied = 0
    try:
        start = time.perf_counter()
        while copied < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            if not batches:
                continue
            async with producer.transaction():
                offsets = {
                    tp: OffsetAndMetadata(records[-1].offset + 1, "")
                    for tp, records in batches.items()
                }
                await producer.send_offsets_to_transaction(offsets, group)
                for records in batches.values():
                    for r in records:
                        await producer.send(target, r.value, key=r.key, headers=list(r.headers))
                    copied += len(records)
        return n / (time.perf_counter() - start)
    finally:
        await producer.stop()
        await consumer.stop()


async def mqkit_copy(url: str, n: int, exactly_once: bool) -> float:
    source, target = await seed(url, n)
    group = f"mqkit-{uuid.uuid4().hex[:8]}"
    async with mqkit.connect(url) as broker:
        app = mqkit.App(broker=broker)

        @app.subscriber(source, group=group, concurrency=8, exactly_once=exactly_once)
        async def copy(ctx: mqkit.Context, message: mqkit.Message) -> None:
            await ctx.publish(target, message.body, key=message.key)

        start = time.perf_counter()
        async with app.running():
            # Lag is Kafka's to tell: polled, 20 times a second, as an operator would.
            while (await broker.lag(source, group)).waiting:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            seconds = time.perf_counter() - start
    return n / seconds


async def measure(url: str, n: int, repeat: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"raw": [], "eos": [], "alo": []}
    for _ in range(repeat):
        rates["raw"].append(await raw_copy(url, n))
        rates["eos"].append(await mqkit_copy(url, n, exactly_once=True))
        rates["alo"].append(await mqkit_copy(url, n, exactly_once=False))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
    )
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=[loop.value for loop in Loop], default="asyncio")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loops.factory(Loop(args.loop))) as runner:
        rates = runner.run(measure(args.url, args.messages, args.repeat))
        ran_on = loops.name(runner.get_loop())
    raw, eos, alo = (statistics.median(rates[k]) for k in ("raw", "eos", "alo"))
    print(f"copy of {args.messages:,} on {ran_on}, median of {args.repeat}:")
    print("| copy | rate | exactly-once / this |")
    print("|---|---|---|")
    print(f"| aiokafka transactional loop (raw) | {raw:,.0f}/s | {eos / raw:.2f}x |")
    print(f"| mqkit `exactly_once=True` | {eos:,.0f}/s | 1.00x |")
    print(f"| mqkit at-least-once (same App) | {alo:,.0f}/s | {eos / alo:.2f}x |")


if __name__ == "__main__":
    main()
