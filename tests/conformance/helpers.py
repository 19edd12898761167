from __future__ import annotations

import asyncio
import contextlib

import mqkit


async def receive(
    sub: mqkit.Subscription, n: int, *, timeout: float = 15.0, ack: bool = True
) -> list[mqkit.Delivery]:
    """Exactly n deliveries (acked unless told not to), or TimeoutError."""
    out: list[mqkit.Delivery] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            delivery = await anext(sub)
            out.append(delivery)
            if ack:
                await delivery.ack()
    return out


async def drain(sub: mqkit.Subscription, *, idle: float = 0.5) -> list[mqkit.Delivery]:
    """Acked deliveries until none came for `idle` seconds."""
    out: list[mqkit.Delivery] = []
    while True:
        try:
            delivery = await asyncio.wait_for(anext(sub), idle)
        except (TimeoutError, StopAsyncIteration):
            return out
        out.append(delivery)
        await delivery.ack()


async def nothing_arrives(sub: mqkit.Subscription, wait: float = 0.5) -> bool:
    with contextlib.suppress(TimeoutError):
        delivery = await asyncio.wait_for(anext(sub), wait)
        await delivery.nack()
        return False
    return True
