"""Throughput and latency of a mqkit backend, optionally next to a peer queue in the same run.

    python -m benchmarks.run --url sqlite:////tmp/bench.db --peer persist-queue
    python -m benchmarks.run --url redis://127.0.0.1:6379/0 --raw --faststream

Rows: single awaited publish, batched publish, consume with acks (one consumer), an App's
subscriber draining a backlog (the worker's own cost on top), consume in batches with one
bulk ack each and an App batch subscriber (`batch=`) doing the same, and end-to-end latency
p50/p99 at a fixed offered rate. `--raw` runs the broker's own client on
the same rows first (benchmarks/raw.py) and prints mqkit's ratio to it (for latency, raw
divided by mqkit, so above 1 is better there too). Speed is reported here, never asserted in
tests: this machine's timings are noisy, so compare ratios taken in the same run.
`--faststream` runs FastStream too (benchmarks/faststream_peer.py: the publish rows, and
its subscriber beside the App's), taking turns with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

import mqkit
from mqkit.cli import loops
from mqkit.cli.loops import Loop

BODY = b"x" * 100


@dataclass
class Row:
    name: str
    mqkit: float
    peer: float | None = None
    unit: str = "msg/s"
    faststream: float | None = None

    @property
    def ratio(self) -> float | None:
        return self._over(self.peer)

    @property
    def faststream_ratio(self) -> float | None:
        return self._over(self.faststream)

    def _over(self, other: float | None) -> float | None:
        if other is None or other == 0:
            return None
        if self.unit == "ms":  # lower is better
            return other / self.mqkit if self.mqkit else None
        return self.mqkit / other


def _topic(name: str) -> str:
    return f"bench-{name}-{os.getpid()}-{time.monotonic_ns()}"


async def publish_single(url: str, n: int) -> float:
    async with mqkit.connect(url) as broker:
        topic = _topic("single")
        # A group exists, as in real use: some brokers drop what no queue would receive.
        await (await broker.subscribe(topic, group="bench")).close()
        start = time.perf_counter()
        for _ in range(n):
            await broker.publish(topic, BODY)
        return n / (time.perf_counter() - start)


async def publish_batched(url: str, n: int, batch: int) -> tuple[float, str]:
    async with mqkit.connect(url) as broker:
        topic = _topic("batch")
        # The consume row reads what this row wrote, through a group made before publishing.
        await (await broker.subscribe(topic, group="bench")).close()
        messages = [mqkit.Message(topic=topic, body=BODY) for _ in range(n)]
        start = time.perf_counter()
        for i in range(0, n, batch):
            await broker.publish_batch(messages[i : i + batch])
        return n / (time.perf_counter() - start), topic


async def consume_acked(url: str, topic: str, n: int, prefetch: int) -> float:
    async with mqkit.connect(url) as broker:
        sub = await broker.subscribe(topic, group="bench", prefetch=prefetch)
        start = time.perf_counter()
        seen = 0
        async for delivery in sub:
            await delivery.ack()
            seen += 1
            if seen == n:
                break
        rate = n / (time.perf_counter() - start)
        await sub.close()
        return rate


async def _backlog(broker: mqkit.Broker, topic: str, n: int, batch: int) -> None:
    """`n` messages waiting on `topic`, published in batches of `batch`."""
    for first in range(0, n, batch):
        size = min(batch, n - first)
        await broker.publish_batch([mqkit.Message.create(topic, BODY) for _ in range(size)])


async def consume_batches(url: str, n: int, batch: int) -> float:
    """subscribe(), read as batches of `batch` (what a batch subscriber reads) and each acked
    with one `mqkit.ack_all`: the subscription's own cost, under the batch subscriber's."""
    from mqkit.worker.batch import Batches

    topic = _topic("bulk")
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group="bench")).close()
        await _backlog(broker, topic, n, batch)
        sub = await broker.subscribe(topic, group="bench", prefetch=2 * batch)
        batches = Batches(sub, batch, 0.05)
        start = time.perf_counter()
        seen = 0
        while seen < n:
            deliveries = await anext(batches)
            await mqkit.ack_all(deliveries)
            seen += len(deliveries)
        rate = n / (time.perf_counter() - start)
        await sub.close()
        return rate


async def worker(
    url: str, n: int, batch: int, concurrency: int, prefetch: int | None = None
) -> float:
    """An App's subscriber (decode, the middleware chain, ack) draining n waiting messages:
    the worker's own cost on top of consume + ack (give both the same `prefetch`; None is
    the subscriber's default)."""
    topic = _topic("worker")
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group="bench-worker")).close()  # the group waits
        await _backlog(broker, topic, n, batch)
        app = mqkit.App(broker=broker, shutdown_timeout=5)
        done = asyncio.Event()
        seen = 0

        @app.subscriber(topic, group="bench-worker", concurrency=concurrency, prefetch=prefetch)
        async def handle(body: bytes) -> None:
            nonlocal seen
            seen += 1
            if seen >= n:
                done.set()

        start = time.perf_counter()
        async with app.running():
            await done.wait()
            rate = n / (time.perf_counter() - start)
        return rate


async def worker_batches(url: str, n: int, batch: int, concurrency: int) -> float:
    """An App's batch subscriber (`batch=`, a list handler, one bulk ack per batch) draining
    n waiting messages."""
    topic = _topic("batches")
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group="bench-batches")).close()
        await _backlog(broker, topic, n, batch)
        app = mqkit.App(broker=broker, shutdown_timeout=5)
        done = asyncio.Event()
        seen = 0

        @app.subscriber(topic, group="bench-batches", batch=batch, concurrency=concurrency)
        async def handle(bodies: list[bytes]) -> None:
            nonlocal seen
            seen += len(bodies)
            if seen >= n:
                done.set()

        start = time.perf_counter()
        async with app.running():
            await done.wait()
            rate = n / (time.perf_counter() - start)
        return rate


async def latency(url: str, rate: float, seconds: float) -> tuple[float, float]:
    """p50 and p99 milliseconds from publish to handler, at `rate` messages per second."""
    async with mqkit.connect(url) as broker:
        topic = _topic("latency")
        sub = await broker.subscribe(topic, group="bench")
        total = int(rate * seconds)
        samples: list[float] = []

        async def consume() -> None:
            async for delivery in sub:
                sent = float(delivery.message.headers["sent"])
                samples.append((time.time() - sent) * 1000)
                await delivery.ack()
                if len(samples) == total:
                    return

        consumer = asyncio.create_task(consume())
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await broker.publish(topic, BODY, headers={"sent": repr(time.time())})
        await asyncio.wait_for(consumer, 60)
        await sub.close()
        q = statistics.quantiles(samples, n=100)
        return q[49], q[98]


# -- the peer: persist-queue's SQLite queues, as documented ------------------------------------


def peer_persist_queue(workdir: Path, single: int, batched: int, batch: int) -> dict[str, float]:
    import persistqueue

    out: dict[str, float] = {}
    q = persistqueue.SQLiteAckQueue(str(workdir / "pq-single"), multithreading=True)
    start = time.perf_counter()
    for _ in range(single):
        q.put(BODY)
    out["single"] = single / (time.perf_counter() - start)

    # Its batched mode: a plain SQLiteQueue without auto-commit, committed once per batch.
    bq = persistqueue.SQLiteQueue(str(workdir / "pq-batch"), auto_commit=False)
    start = time.perf_counter()
    for i in range(batched):
        bq.put(BODY)
        if (i + 1) % batch == 0:
            bq.task_done()
    bq.task_done()
    out["batched"] = batched / (time.perf_counter() - start)

    aq = persistqueue.SQLiteAckQueue(str(workdir / "pq-ack"), multithreading=True)
    for _ in range(batched):
        aq.put(BODY)
    start = time.perf_counter()
    for _ in range(batched):
        item = aq.get()
        aq.ack(item)
    out["consume"] = batched / (time.perf_counter() - start)
    return out


PEERS: dict[str, Callable[[Path, int, int, int], dict[str, float]]] = {
    "persist-queue": peer_persist_queue,
}


async def raw_rows(url: str, args: argparse.Namespace) -> dict[str, float]:
    """The raw client for the URL's broker on the same workloads (benchmarks/raw.py)."""
    from benchmarks.raw import for_url

    raw = for_url(url)
    try:
        single = await raw.single(args.single)
        batched, where = await raw.batched(args.messages, args.batch)
        consumed = await raw.consume(where, args.messages, args.prefetch)
        _, backlog = await raw.batched(args.messages, args.batch)
        batches = await raw.batch_consume(backlog, args.messages, args.batch)
        p50, p99 = await raw.latency(args.rate, args.seconds)
    finally:
        await raw.close()
    return {
        "single": single, "batched": batched, "consume": consumed, "p50": p50, "p99": p99,
        "batches": batches,
    }  # fmt: skip


async def faststream_rows(url: str, args: argparse.Namespace) -> dict[str, float]:
    """FastStream on the same workloads, with mqkit's durability (benchmarks/faststream_peer.py)."""
    from benchmarks.faststream_peer import for_url

    fs = for_url(url)
    return {
        "single": await fs.single(args.single),
        "batched": await fs.batched(args.messages, args.batch),
        "worker": await fs.subscriber(args.messages, args.batch, args.concurrency, args.prefetch),
    }


async def mqkit_rows(url: str, args: argparse.Namespace) -> dict[str, float]:
    single = await publish_single(url, args.single)
    batched, topic = await publish_batched(url, args.messages, args.batch)
    consumed = await consume_acked(url, topic, args.messages, args.prefetch)
    p50, p99 = await latency(url, args.rate, args.seconds)
    app = await worker(url, args.messages, args.batch, args.concurrency, args.prefetch)
    bulk = await consume_batches(url, args.messages, args.batch)
    batches = await worker_batches(url, args.messages, args.batch, 1)  # as raw: one at a time
    return {
        "single": single, "batched": batched, "consume": consumed, "p50": p50, "p99": p99,
        "worker": app, "bulk": bulk, "batches": batches,
    }  # fmt: skip


async def bench(url: str, args: argparse.Namespace, peer: dict[str, float] | None) -> list[Row]:
    """Median of `--repeat` runs; with --raw, raw and mqkit take turns so that both see the
    same state of a noisy machine."""
    ours: list[dict[str, float]] = []
    raws: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for _ in range(args.repeat):
        if args.raw:
            raws.append(await raw_rows(url, args))
        if args.faststream:
            theirs.append(await faststream_rows(url, args))
        ours.append(await mqkit_rows(url, args))
    m = _medians(ours)
    if raws:
        peer = _medians(raws)
    peer = peer or {}
    fs = _medians(theirs) if theirs else {}
    return [
        Row(
            "publish, single awaited", m["single"], peer.get("single"), faststream=fs.get("single")
        ),
        Row(
            f"publish, batches of {args.batch}",
            m["batched"],
            peer.get("batched"),
            faststream=fs.get("batched"),
        ),
        Row(
            f"consume + ack, 1 consumer, prefetch {args.prefetch}",
            m["consume"],
            peer.get("consume"),
        ),
        Row(
            f"worker: App subscriber, concurrency {args.concurrency}, prefetch {args.prefetch}",
            m["worker"],
            None,
            faststream=fs.get("worker"),
        ),
        Row(
            f"consume in batches of {args.batch}, one ack_all each (raw: one ack a batch)",
            m["bulk"],
            peer.get("batches"),
        ),
        Row(
            f"worker: App batch subscriber, batch={args.batch}, concurrency 1 (raw: as above)",
            m["batches"],
            peer.get("batches"),
        ),
        Row(f"end-to-end p50 at {args.rate:.0f} msg/s", m["p50"], peer.get("p50"), unit="ms"),
        Row(f"end-to-end p99 at {args.rate:.0f} msg/s", m["p99"], peer.get("p99"), unit="ms"),
    ]


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def render(url: str, rows: list[Row], peer: str | None, faststream: bool = False) -> Table:
    table = Table(title=f"mqkit {mqkit.__version__} on {mqkit.connect(url).safe_url}")
    table.add_column("workload")
    table.add_column("mqkit", justify="right")
    if peer:
        table.add_column(peer, justify="right")
        table.add_column("ratio", justify="right")
    if faststream:
        table.add_column("FastStream", justify="right")
        table.add_column("mqkit / FastStream", justify="right")
    for row in rows:
        fmt = "{:,.1f} ms" if row.unit == "ms" else "{:,.0f}/s"
        cells = [row.name, fmt.format(row.mqkit)]
        if peer:
            cells.append(fmt.format(row.peer) if row.peer is not None else "")
            cells.append(f"{row.ratio:.2f}x" if row.ratio is not None else "")
        if faststream:
            ratio = row.faststream_ratio
            cells.append(fmt.format(row.faststream) if row.faststream is not None else "")
            cells.append(f"{ratio:.2f}x" if ratio is not None else "")
        table.add_row(*cells)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="broker URL (default: a fresh sqlite file)")
    parser.add_argument("--peer", choices=sorted(PEERS), help="run a peer queue too")
    parser.add_argument(
        "--raw", action="store_true", help="run the broker's raw client too (kafka, amqp, redis)"
    )
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--single", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--prefetch", type=int, default=500)
    parser.add_argument(
        "--peer-messages",
        type=int,
        default=10_000,
        help="messages for the peer's rows (it is slow; rates stay comparable)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="the worker row's handlers")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is shown")
    parser.add_argument(
        "--faststream",
        action="store_true",
        help="run FastStream too, with mqkit's durability (kafka, amqp, redis)",
    )
    parser.add_argument("--json", action="store_true", help="print rows as JSON too")
    parser.add_argument(
        "--loop",
        choices=[loop.value for loop in Loop],
        default=Loop.asyncio.value,
        help="the event loop the rows run on (the raw client's too), as for `mqkit run --loop`",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mqkit-bench-"))
    url = args.url or f"sqlite:///{workdir / 'bench.db'}"
    try:
        peer = (
            PEERS[args.peer](workdir, args.single, args.peer_messages, args.batch)
            if args.peer
            else None
        )
        with asyncio.Runner(loop_factory=loops.factory(Loop(args.loop))) as runner:
            rows = runner.run(bench(url, args, peer))
            ran_on = loops.name(runner.get_loop())
        console = Console(width=max(Console().width, 130))  # a row of the widest table per line
        console.print(f"event loop: {ran_on}")
        console.print(render(url, rows, "raw client" if args.raw else args.peer, args.faststream))
        if args.json:
            print(
                json.dumps(
                    [
                        asdict(r) | {"ratio": r.ratio, "faststream_ratio": r.faststream_ratio}
                        for r in rows
                    ]
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
