"""Which HTTP client the dispatcher uses, measured: httpx.AsyncClient and aiohttp posting
1 KB bodies to a bare 204 endpoint in another process, at the same concurrency, same run.

    python -m benchmarks.webhook_clients --requests 20000 --concurrency 64 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import httpx

BODY = b"x" * 1024
Post = Callable[[], Awaitable[int]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    """Until `proc` accepts connections on `port`."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


@contextlib.contextmanager
def target() -> Iterator[str]:
    """The bare 204 endpoint (benchmarks/webhook_target.py) in its own process; its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.webhook_target", str(port)])
    try:
        wait_for(port, proc, "the benchmark endpoint")
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        proc.terminate()
        proc.wait(10)


async def loop_rate(post: Post, requests: int, concurrency: int) -> float:
    """Requests per second of `concurrency` workers sharing `requests` POSTs."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await post()
            assert status == 204, status

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def aiohttp_rate(url: str, requests: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post() -> int:
            async with session.post(url, data=BODY) as response:
                await response.read()
                return response.status

        return await loop_rate(post, requests, concurrency)


async def httpx_rate(url: str, requests: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def post() -> int:
            return (await client.post(url, content=BODY)).status_code

        return await loop_rate(post, requests, concurrency)


async def main(requests: int, concurrency: int, repeat: int) -> None:
    with target() as url:
        rates: dict[str, list[float]] = {"aiohttp": [], "httpx": []}
        for _ in range(repeat):
            rates["aiohttp"].append(await aiohttp_rate(url, requests, concurrency))
            rates["httpx"].append(await httpx_rate(url, requests, concurrency))
    for name, values in rates.items():
        print(
            f"{name}: {statistics.median(values):,.0f} req/s (runs: "
            + ", ".join(f"{v:,.0f}" for v in values)
            + ")"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency, args.repeat))
