"""The worker's own cost per message, without a broker: a subscriber's whole chain (handler
slot, Context, log context, stats, retry policy, replay filter, the handler's call and an
ack that does nothing) against awaiting the bare handler, in one process.

    python -m benchmarks.worker_chain [--messages 200000]

CPU only and no I/O, so it is steadier on this machine than the broker rows: the figure to
watch when changing the hot path. The best of 5 runs is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import mqkit
from mqkit.broker import Delivery
from mqkit.retry import RetryPolicy
from mqkit.worker.consumer import Consumer
from mqkit.worker.fetch_gate import Limits, SharedLimits


class _Settled(Delivery):
    """A delivery whose settling costs nothing: what is left is the worker's."""

    async def _ack(self) -> None:
        pass

    async def _nack(self, delay: float) -> None:
        pass


async def measure(n: int) -> tuple[float, float]:
    app = mqkit.App("memory://")

    @app.subscriber("orders", group="bench")
    async def handle(body: bytes) -> None:
        pass

    consumer = Consumer(
        app.subscribers[0],
        policy=RetryPolicy(),
        app_middleware=[],
        shared_limits=SharedLimits(None, "pause", 1),
    )
    consumer._call = consumer._chain(Limits(None, consumer._shared_limits), "mqkit")
    broker = mqkit.connect("memory://")
    messages = [mqkit.Message.create("orders", b"x" * 100) for _ in range(n)]
    chain = bare = float("inf")
    for _ in range(5):
        deliveries = [_Settled(m, "bench", broker) for m in messages]
        start = time.perf_counter()
        for delivery in deliveries:
            await consumer._slots.acquire()  # as the pool does before handing it over
            await consumer._handle(delivery)
        chain = min(chain, (time.perf_counter() - start) / n)
        start = time.perf_counter()
        for message in messages:
            await handle(message.body)
        bare = min(bare, (time.perf_counter() - start) / n)
    return chain, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    chain, bare = asyncio.run(measure(args.messages))
    print(f"worker chain: {chain * 1e6:.2f} us per message; bare handler {bare * 1e6:.2f} us")


if __name__ == "__main__":
    main()
