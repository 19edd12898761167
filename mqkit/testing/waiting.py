"""Waiting for a condition, or for deliveries, with a deadline instead of a sleep: for
tests of handlers and adapters, where a fixed sleep is either too short on a loaded machine
or a waste on an idle one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from mqkit.broker import Broker, Delivery, Subscription
from mqkit.message import Message


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Until `condition()` is true; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `predicate()` until true; returns the seconds it took, or fails naming `what`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def receive(
    sub: Subscription, n: int, *, timeout: float = 15.0, ack: bool = True
) -> list[Delivery]:
    """Exactly n deliveries (acked unless told not to), or TimeoutError."""
    out: list[Delivery] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            delivery = await anext(sub)
            out.append(delivery)
            if ack:
                await delivery.ack()
    return out


async def drain(sub: Subscription, *, idle: float = 0.5) -> list[Delivery]:
    """Acked deliveries until none came for `idle` seconds."""
    out: list[Delivery] = []
    while True:
        try:
            delivery = await asyncio.wait_for(anext(sub), idle)
        except (TimeoutError, StopAsyncIteration):
            return out
        out.append(delivery)
        await delivery.ack()


async def nothing_arrives(sub: Subscription, wait: float = 0.5) -> bool:
    """True when no delivery comes within `wait` seconds (one that does is nacked)."""
    with contextlib.suppress(TimeoutError):
        delivery = await asyncio.wait_for(anext(sub), wait)
        await delivery.nack()
        return False
    return True


async def visible(
    broker: Broker, topic: str, wait: float = 0.3, group: str = "reader"
) -> list[Message]:
    """Everything a consumer of `group` can read from the topic until `wait` s pass quietly."""
    async with await broker.subscribe(topic, group=group, start="earliest") as sub:
        return [d.message for d in await drain(sub, idle=wait)]
