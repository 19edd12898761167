"""Webhook throughput on this machine, each next to its bare baseline in the same run.

    python -m benchmarks.webhooks --messages 20000 --concurrency 64 --repeat 3

Dispatcher: N messages are published first (not timed); then one Dispatcher (SSRF guard on,
127.0.0.1 allowed; attempt log in SQLite) signs and POSTs each to one endpoint allowed
`concurrency` attempts at once, timed from start to the N-th 2xx. The endpoint is the bare
asyncio 204 server (benchmarks/webhook_target.py) in its own process. Bare loop: aiohttp
posting the same bodies to the same endpoint at the same concurrency, nothing else.

Receiver: `concurrency` aiohttp clients post deliveries signed beforehand (distinct ids) to
the Receiver app served by uvicorn in its own process, which verifies, deduplicates and
publishes to the broker before answering; next to a bare starlette app answering 204 under
the same uvicorn. Requests/s and the p50/p99 latency of each.

CPU per delivery (this process's, for the dispatcher and the bare loop; the uvicorn
process's, for the servers) says what bounds one process: a process busy near 100% of a
core is bound by its own CPU, and more processes help only where there are idle cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

import mqkit
from benchmarks.webhook_clients import aiohttp_rate, free_port, target, wait_for
from mqkit.sql import engine_for
from mqkit.webhooks import Secret, SsrfGuard, sign
from mqkit.webhooks.attempts import AttemptLog
from mqkit.webhooks.client import WebhookClient
from mqkit.webhooks.dispatcher import Dispatcher
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry

BODY = (
    b'{"type": "order.paid", "data": {"id": 12345, "amount": 99.5, "note": "' + b"x" * 900 + b'"}}'
)


async def dispatcher_rate(
    broker_url: str, endpoint_url: str, messages: int, concurrency: int, workdir: Path
) -> tuple[float, float]:
    """Signed deliveries/s, and this process's CPU seconds per delivery meanwhile."""
    db = f"sqlite:///{workdir / f'hooks-{uuid.uuid4().hex[:6]}.db'}"
    engine = engine_for(db, wal=True)  # one engine for both, as `mqkit webhook dispatch` does
    registry, log = EndpointRegistry(engine=engine), AttemptLog(engine=engine)
    topic = f"bench-hooks-{uuid.uuid4().hex[:8]}"
    await registry.add(Endpoint(url=endpoint_url, topics=[topic], max_concurrency=concurrency))
    async with mqkit.connect(broker_url) as broker:
        for start in range(0, messages, 1000):
            n = min(1000, messages - start)
            await broker.publish_batch(
                [
                    mqkit.Message.create(topic, BODY, content_type="application/json")
                    for _ in range(n)
                ]
            )
        dispatcher = Dispatcher(
            broker,
            registry,
            log,
            topics=[topic],
            group=f"bench-{topic}",
            retry_topic=f"{topic}-retry",
            client=WebhookClient(SsrfGuard(["127.0.0.1/32"])),
            in_flight=max(512, 4 * concurrency),
        )
        stop = asyncio.Event()
        async with dispatcher:
            started, cpu = time.perf_counter(), time.process_time()
            task = asyncio.create_task(dispatcher.run(stop))
            # Polling costs at most 10 ms on runs of several seconds.
            while dispatcher.stats.delivered < messages:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            stop.set()
            await task
        assert dispatcher.stats.failed_attempts == 0, dispatcher.stats
    await log.close()
    await engine.dispose()
    return messages / elapsed, cpu / messages


async def bare_rate(endpoint_url: str, messages: int, concurrency: int) -> tuple[float, float]:
    """The bare aiohttp loop's requests/s, and its CPU seconds per request."""
    cpu = time.process_time()
    rate = await aiohttp_rate(endpoint_url, messages, concurrency)
    return rate, (time.process_time() - cpu) / messages


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- receiver ----------------------------------------------------------------------------------

RECEIVER_APP = """
import os
import mqkit
from mqkit.webhooks.receiver import Receiver, Source
broker = mqkit.connect(os.environ["BENCH_BROKER"])
receiver = Receiver(broker, [Source("acme", [os.environ["BENCH_SECRET"]], "bench-received")],
                    max_pending=100_000)

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await broker.start()
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await broker.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    await receiver(scope, receive, send)
"""

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def accept(request):
    await request.body()
    return Response(status_code=204)

app = Starlette(routes=[Route("/{source}", accept, methods=["POST"])])
"""


@contextlib.contextmanager
def uvicorn_app(
    module: str, workdir: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port),
         "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"],
        cwd=workdir,
        env={**os.environ, **env, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        wait_for(port, proc, module)
        yield f"http://127.0.0.1:{port}/acme", proc
    finally:
        proc.terminate()
        proc.wait(10)


async def post_all(
    url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 latency (ms) of posting every request once."""
    latencies: list[float] = []
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body, headers in queue:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status in (200, 204), (response.status, await response.text())
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return len(requests) / elapsed, quantiles[49], quantiles[98]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--broker", action="append", help="broker URL(s) for the dispatcher")
    args = parser.parse_args()
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="mqkit-bench-hooks-"))
    brokers = args.broker or ["memory://", f"sqlite:///{workdir / 'broker.db'}"]

    table = Table(
        "dispatcher broker",
        "signed deliveries/s",
        "bare aiohttp loop req/s",
        "ratio",
        "CPU us each (dispatcher / bare)",
    )
    with target() as endpoint_url:
        for broker_url in brokers:
            ours: list[tuple[float, float]] = []
            bare: list[tuple[float, float]] = []
            for _ in range(args.repeat):  # alternate, so drift hits both the same
                bare.append(await bare_rate(endpoint_url, args.messages, args.concurrency))
                ours.append(
                    await dispatcher_rate(
                        broker_url, endpoint_url, args.messages, args.concurrency, workdir
                    )
                )
            o, b = statistics.median(r for r, _ in ours), statistics.median(r for r, _ in bare)
            oc = statistics.median(c for _, c in ours) * 1e6
            bc = statistics.median(c for _, c in bare) * 1e6
            name = broker_url.split("://")[0]
            console.print(
                f"{name}: dispatcher {[round(r) for r, _ in ours]}, "
                f"bare {[round(r) for r, _ in bare]}"
            )
            table.add_row(name, f"{o:,.0f}", f"{b:,.0f}", f"{o / b:.2f}x", f"{oc:.0f} / {bc:.0f}")
    console.print(table)

    secret = Secret.generate()
    (workdir / "bench_receiver.py").write_text(RECEIVER_APP)
    (workdir / "bench_bare.py").write_text(BARE_APP)
    rtable = Table("endpoint", "req/s", "p50 ms", "p99 ms", "server CPU us each")
    env = {"BENCH_SECRET": secret.text, "BENCH_BROKER": f"sqlite:///{workdir / 'received.db'}"}
    results: dict[str, list[tuple[float, float, float, float]]] = {"bare": [], "receiver": []}
    for _ in range(args.repeat):
        for name, module in (("bare", "bench_bare"), ("receiver", "bench_receiver")):
            requests = [
                (BODY, sign([secret], f"msg_{uuid.uuid4().hex}", BODY))
                for _ in range(args.requests)
            ]
            with uvicorn_app(module, workdir, env) as (url, server):
                cpu = cpu_seconds(server.pid)
                rate, p50, p99 = await post_all(url, requests, args.concurrency)
                each = (cpu_seconds(server.pid) - cpu) / len(requests)
                results[name].append((rate, p50, p99, each))
    for name, label in (
        ("bare", "bare starlette 204 (uvicorn)"),
        ("receiver", "mqkit Receiver -> sqlite broker (uvicorn)"),
    ):
        runs = results[name]
        rtable.add_row(
            label,
            f"{statistics.median(r[0] for r in runs):,.0f}",
            f"{statistics.median(r[1] for r in runs):.1f}",
            f"{statistics.median(r[2] for r in runs):.1f}",
            f"{statistics.median(r[3] for r in runs) * 1e6:.0f}",
        )
    console.print(rtable)
    ratio = statistics.median(r[0] for r in results["receiver"]) / statistics.median(
        r[0] for r in results["bare"]
    )
    console.print(f"receiver / bare: {ratio:.2f}x")
    for name in ("bare", "receiver"):  # what bounds one process: its own CPU, or not
        runs = results[name]
        busy = statistics.median(r[0] * r[3] for r in runs)
        console.print(f"{name} server process busy {busy:.0%} of one core while posted to")


if __name__ == "__main__":
    asyncio.run(main())
