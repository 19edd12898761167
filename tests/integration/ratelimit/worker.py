"""A worker sharing one rate limit through Redis:
`python -m tests.integration.ratelimit.worker BROKER LIMITS TOPIC KEY LOG [OUTAGE WORKERS]`.
Appends "<id> <time>" per message handled to LOG;
prints "ready" once consuming; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import TextIO

import mqkit


async def main(broker: str, limits: str, topic: str, key: str, out: TextIO, *more: str) -> None:
    app = mqkit.App(
        broker,
        limits_url=limits,
        limits_outage="local" if more and more[0] == "local" else "pause",
        limits_workers=int(more[1]) if len(more) > 1 else 1,
    )

    @app.subscriber(topic, group="shared", concurrency=8, rate="100/s", burst=10, rate_key=key)
    async def work(message: mqkit.Message) -> None:
        out.write(f"{message.id} {time.time():.6f}\n")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app.running():
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    broker, limits, topic, key, log, *more = sys.argv[1:]
    with open(log, "a", buffering=1) as out:
        asyncio.run(main(broker, limits, topic, key, out, *more))
