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

Then the latency of each mqkit way (`--latency-rate` a second for `--latency-seconds`,
published one by one as they come): from the publish to a read_committed reader of the
output, p50 and p99 over every message of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
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
        await broker.ensure_topic(source)  # type: ignore[attr-defined]
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


async def copy_latency(url: str, exactly_once: bool, rate: int, seconds: float) -> list[float]:
    """Seconds from each publish to the copy seen by a read_committed reader, at `rate`/s."""
    source, target = await seed(url, 0)
    group = f"mqkit-{uuid.uuid4().hex[:8]}"
    n = int(rate * seconds)
    seen: list[float] = []
    reader = AIOKafkaConsumer(
        target,
        bootstrap_servers=urlsplit(url).netloc,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()

    async def read() -> None:
        while len(seen) < n:
            for records in (await reader.getmany(timeout_ms=200)).values():
                now = time.time()
                seen.extend(now - struct.unpack("!d", r.value[:8])[0] for r in records)

    try:
        async with mqkit.connect(url) as broker:
            app = mqkit.App(broker=broker)

            @app.subscriber(source, group=group, concurrency=8, exactly_once=exactly_once)
            async def copy(ctx: mqkit.Context, message: mqkit.Message) -> None:
                await ctx.publish(target, message.body, key=message.key)

            async with app.running():
                reading = asyncio.create_task(read())
                started = time.perf_counter()
                for i in range(n):
                    # Paced by the clock, not by sleeps: a slow publish is not made up later.
                    await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                    body = struct.pack("!d", time.time()) + b"x" * 92
                    await broker.publish(source, body, key=f"k{i % 101}")
                await asyncio.wait_for(reading, 60)
    finally:
        await reader.stop()
    return seen


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
    parser.add_argument("--latency-rate", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    args = parser.parse_args()
    latency: dict[str, list[float]] = {"eos": [], "alo": []}
    with asyncio.Runner(loop_factory=loops.factory(Loop(args.loop))) as runner:
        rates = runner.run(measure(args.url, args.messages, args.repeat))
        for _ in range(args.repeat):
            for way in latency:
                latency[way] += runner.run(
                    copy_latency(args.url, way == "eos", args.latency_rate, args.latency_seconds)
                )
        ran_on = loops.name(runner.get_loop())
    raw, eos, alo = (statistics.median(rates[k]) for k in ("raw", "eos", "alo"))
    print(f"copy of {args.messages:,} on {ran_on}, median of {args.repeat}:")
    print("| copy | rate | exactly-once / this |")
    print("|---|---|---|")
    print(f"| aiokafka transactional loop (raw) | {raw:,.0f}/s | {eos / raw:.2f}x |")
    print(f"| mqkit `exactly_once=True` | {eos:,.0f}/s | 1.00x |")
    print(f"| mqkit at-least-once (same App) | {alo:,.0f}/s | {eos / alo:.2f}x |")
    print(f"\nlatency, publish to a read_committed reader, {args.latency_rate:,}/s:")
    print("| copy | p50 | p99 | messages |")
    print("|---|---|---|---|")
    for way, name in (("eos", "`exactly_once=True`"), ("alo", "at-least-once")):
        cuts = statistics.quantiles(latency[way], n=100)
        print(f"| mqkit {name} | {cuts[49] * 1000:.1f} ms | {cuts[98] * 1000:.1f} ms | ", end="")
        print(f"{len(latency[way]):,} |")


if __name__ == "__main__":
    main()
