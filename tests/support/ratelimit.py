"""For the rate-limit tests: a clock to set by hand, offering a steady load, counting per second."""

from __future__ import annotations

import asyncio
import collections
import time

import mqkit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def per_second(times: list[float]) -> list[int]:
    """Handled per 1-second window, counted from the first."""
    start = min(times)
    counts = collections.Counter(int(t - start) for t in times)
    return [counts[i] for i in range(max(counts) + 1)]


async def offer(broker: mqkit.Broker, topic: str, per_s: int, seconds: float) -> list[str]:
    """Publish `per_s` messages a second for `seconds`, in 10 ms ticks; their ids."""
    sent: list[str] = []
    started = time.monotonic()
    tick = 0
    while (tick := tick + 1) * 0.01 <= seconds:
        batch = [mqkit.Message.create(topic, b"x") for _ in range(per_s // 100)]
        await broker.publish_batch(batch)
        sent += [m.id for m in batch]
        await asyncio.sleep(max(0.0, started + tick * 0.01 - time.monotonic()))
    return sent
