"""Cost as work grows: draining a large backlog at a steady rate in bounded memory, and
sqlite with millions of retained messages as fast as an empty file.

    python -m benchmarks.backlog drain --url redis://127.0.0.1:6379/0 [--messages 1000000]
    python -m benchmarks.backlog retained [--retained 10000000]

`drain` publishes the backlog from one process, then drains it with an App subscriber in
another (so that its peak RSS is the consumer's alone), timing every `--every` messages:
it prints the rate of each slice, the last slice's rate over the first's, and the
consumer's peak RSS. `retained` measures publishing (awaited, and in batches) and an App
draining what it published on an empty sqlite file, then on one holding `--retained`
earlier messages of the same topic that the group has passed, and prints the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mqkit

BODY = b"x" * 100
GROUP = "bench-backlog"


async def publish(url: str, topic: str, n: int, batch: int = 500) -> float:
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group=GROUP)).close()  # the group waits
        start = time.perf_counter()
        for first in range(0, n, batch):
            size = min(batch, n - first)
            await broker.publish_batch([mqkit.Message.create(topic, BODY) for _ in range(size)])
        return n / (time.perf_counter() - start)


async def drain(
    url: str, topic: str, n: int, every: int, concurrency: int, prefetch: int | None = None
) -> list[float]:
    """An App subscriber handling `n` waiting messages; the seconds at each `every`-th."""
    app = mqkit.App(url, shutdown_timeout=5)
    marks: list[float] = []
    done = asyncio.Event()
    seen = 0

    @app.subscriber(topic, group=GROUP, concurrency=concurrency, prefetch=prefetch)
    async def handle(body: bytes) -> None:
        nonlocal seen
        seen += 1
        if seen % every == 0:
            marks.append(time.perf_counter())
        if seen >= n:
            done.set()

    async with app.running():
        start = time.perf_counter()
        await done.wait()
    return [start, *marks]


async def drain_raw_kafka(url: str, topic: str, n: int, every: int) -> list[float]:
    """aiokafka alone on the same backlog (the group's committed start, commits per batch):
    whether a slowdown is the broker's or mqkit's."""
    from urllib.parse import urlsplit

    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=urlsplit(url).netloc,
        group_id=f"{GROUP}-raw",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    await consumer.start()
    start = time.perf_counter()
    marks: list[float] = []
    seen = 0
    while seen < n:
        batches = await consumer.getmany(timeout_ms=1000, max_records=500)
        for records in batches.values():
            for _ in records:
                seen += 1
                if seen % every == 0:
                    marks.append(time.perf_counter())
        if batches:
            await consumer.commit()
    await consumer.stop()
    return [start, *marks]


def _child(args: list[str]) -> dict[str, float | list[float]]:
    """Run a phase in a process of its own; its JSON result."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.backlog", *args],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float | list[float]] = json.loads(out.strip().splitlines()[-1])
    return result


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_drain(
    url: str, n: int, every: int, concurrency: int, prefetch: int, raw: bool = False
) -> None:
    topic = f"backlog-{time.monotonic_ns()}"
    published = _child(["publish-phase", "--url", url, "--topic", topic, "--messages", str(n)])
    print(f"published {n:,} in batches of 500: {published['rate']:,.0f}/s", flush=True)
    phase = ["--url", url, "--topic", topic, "--messages", str(n), "--every", str(every)]
    options = ["--concurrency", str(concurrency), "--prefetch", str(prefetch)]
    _report("mqkit, an App subscriber", n, every, _child(["drain-phase", *phase, *options]))
    if raw:
        _report("aiokafka alone", n, every, _child(["drain-raw-phase", *phase]))


def _report(who: str, n: int, every: int, drained: dict[str, float | list[float]]) -> None:
    print(who)
    marks = drained["marks"]
    assert isinstance(marks, list)
    rates = [every / (b - a) for a, b in itertools.pairwise(marks)]
    for i, rate in enumerate(rates):
        print(f"  messages {i * every:>9,} to {(i + 1) * every:>9,}: {rate:>9,.0f}/s")
    print(f"drained {n:,}: {n / (marks[-1] - marks[0]):,.0f}/s overall")
    print(f"last slice / first slice: {rates[-1] / rates[0]:.2f}x")
    print(f"consumer peak RSS: {drained['rss_mb']:.0f} MB", flush=True)


async def _measure(url: str, topic: str, n: int, single: int) -> dict[str, float]:
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group=GROUP, start="latest")).close()
        start = time.perf_counter()
        for _ in range(single):
            await broker.publish(topic, BODY)
        singles = single / (time.perf_counter() - start)
    batched = await publish(url, topic, n)
    marks = await drain(url, topic, n + single, n + single, 1)
    return {"single": singles, "batched": batched, "consume": (n + single) / (marks[1] - marks[0])}


async def _fill(url: str, topic: str, n: int) -> float:
    """`n` messages on `topic` before any group reads it, in batches of 5,000."""
    async with mqkit.connect(url) as broker:
        start = time.perf_counter()
        batch = [mqkit.Message.create(topic, BODY) for _ in range(5_000)]
        for done in range(0, n, len(batch)):
            await broker.publish_batch(batch[: min(len(batch), n - done)])
            if done and done % 1_000_000 == 0:
                print(f"  filled {done:,}", file=sys.stderr, flush=True)
        return n / (time.perf_counter() - start)


def run_retained(retained: int, n: int, single: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        empty = f"sqlite:///{tmp}/empty.db"
        full = f"sqlite:///{tmp}/full.db"
        fill = asyncio.run(_fill(full, "orders", retained))
        size = Path(tmp, "full.db").stat().st_size / 2**30
        print(f"filled {retained:,} retained messages: {fill:,.0f}/s, file {size:.1f} GiB")
        rows: dict[str, list[dict[str, float]]] = {"empty": [], "full": []}
        for _ in range(3):  # interleaved, so both see the same state of a noisy machine
            for name, url in (("empty", empty), ("full", full)):
                rows[name].append(asyncio.run(_measure(url, "orders", n, single)))
        for what in ("single", "batched", "consume"):
            a = sorted(r[what] for r in rows["empty"])[1]
            b = sorted(r[what] for r in rows["full"])[1]
            print(
                f"{what:>8}: empty {a:>9,.0f}/s   {retained:,} retained {b:>9,.0f}/s   {b / a:.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", choices=["drain", "retained", "publish-phase", "drain-phase", "drain-raw-phase"]
    )
    parser.add_argument("--url", default="sqlite:////tmp/mqkit-backlog.db")
    parser.add_argument("--topic")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=500, help="drain: the subscriber's")
    parser.add_argument("--raw", action="store_true", help="drain: aiokafka alone too (kafka)")
    parser.add_argument("--retained", type=int, default=10_000_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--measure", type=int, default=20_000, help="retained: batched rows")
    args = parser.parse_args()
    if args.mode == "publish-phase":
        rate = asyncio.run(publish(args.url, args.topic, args.messages))
        print(json.dumps({"rate": rate}))
    elif args.mode == "drain-phase":
        marks = asyncio.run(
            drain(args.url, args.topic, args.messages, args.every, args.concurrency, args.prefetch)
        )
        print(json.dumps({"marks": marks, "rss_mb": _peak_rss_mb()}))
    elif args.mode == "drain-raw-phase":
        marks = asyncio.run(drain_raw_kafka(args.url, args.topic, args.messages, args.every))
        print(json.dumps({"marks": marks, "rss_mb": _peak_rss_mb()}))
    elif args.mode == "drain":
        run_drain(args.url, args.messages, args.every, args.concurrency, args.prefetch, args.raw)
    else:
        run_retained(args.retained, args.measure, args.single)


if __name__ == "__main__":
    main()
