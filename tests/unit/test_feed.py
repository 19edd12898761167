"""The feed stops even when what its reader awaits swallows a cancellation (client-library
code runs there: the subscription's fetch, a shared limiter's Redis call)."""

from __future__ import annotations

import asyncio

import mqkit
from mqkit.broker import Delivery
from mqkit.worker.feed import Feed


async def test_stop_cancels_again_a_reader_that_swallowed_the_cancellation() -> None:
    swallowed = 0
    admitting = asyncio.Event()

    async def admit() -> None:
        nonlocal swallowed
        admitting.set()
        if swallowed == 0:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                swallowed += 1  # as a misbehaving client does: carries on as if nothing
        await asyncio.Event().wait()

    async def handle(delivery: Delivery) -> None:
        await delivery.ack()

    async with mqkit.connect("memory://") as broker:
        subscription = await broker.subscribe("t", group="g")
        feed = Feed(subscription, handle, admit, name="feed-test")
        await broker.publish("t", b"x")
        await asyncio.wait_for(admitting.wait(), 10)
        stopping = asyncio.ensure_future(feed.stop())
        done, _ = await asyncio.wait({stopping}, timeout=30)  # about 1 s: one more cancel
        assert done, "stop() is still waiting for the reader"
        stopping.result()
    assert swallowed == 1
