"""The consumer's worker pool: `size` deliveries at a time, a handler that fails does not
stop its worker, and stopping gives the handlers in flight their deadline, cancels the rest
unsettled (so they come back), and ends even when awaited code swallows a cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

import mqkit
from mqkit.broker import Delivery
from mqkit.testing.waiting import until
from mqkit.worker.pool import Pool


async def _free() -> None:
    return None


async def test_size_workers_handle_at_once_and_no_more() -> None:
    running = 0
    most = 0
    go = asyncio.Event()
    handled = 0

    async def handle(delivery: Delivery) -> None:
        nonlocal running, most, handled
        running += 1
        most = max(most, running)
        await go.wait()
        running -= 1
        await delivery.ack()
        handled += 1

    async with mqkit.connect("memory://") as broker:
        subscription = await broker.subscribe("t", group="g", prefetch=20)
        pool = Pool(subscription, handle, _free, size=3, name="pool-test")
        await broker.publish_batch([mqkit.Message.create("t", b"x") for _ in range(10)])
        await until(lambda: running == 3)
        go.set()
        await until(lambda: handled == 10)
        await pool.stop(5)
    assert most == 3


async def test_a_failing_handler_is_logged_and_its_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[bytes] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(delivery.message.body)
        await delivery.ack()
        if delivery.message.body == b"boom":
            raise RuntimeError("boom")

    async with mqkit.connect("memory://") as broker:
        subscription = await broker.subscribe("t", group="g")
        pool = Pool(subscription, handle, _free, size=1, name="pool-test")
        with caplog.at_level(logging.ERROR, "mqkit"):
            for body in (b"boom", b"next"):
                await broker.publish("t", body)
            await until(lambda: len(seen) == 2)
        assert pool.reading
        await pool.stop(5)
    assert seen == [b"boom", b"next"]
    assert "handling a delivery failed" in caplog.text


async def test_stop_lets_a_handler_finish_within_the_deadline_and_hands_back_the_late() -> None:
    finish = asyncio.Event()
    started: list[bytes] = []
    admissions = 0
    idle_cancelled = asyncio.Event()

    async def admit() -> None:
        nonlocal admissions
        admissions += 1
        if admissions > 2:  # the third worker waits here, idle
            try:
                await asyncio.Event().wait()
            finally:
                idle_cancelled.set()

    async def handle(delivery: Delivery) -> None:
        started.append(delivery.message.body)
        if delivery.message.body == b"quick":
            await finish.wait()
            for _ in range(20):  # still busy for a while after stop() began: it must wait
                await asyncio.sleep(0)
            await delivery.ack()
        else:
            await asyncio.Event().wait()  # never done: cancelled at the deadline

    async with mqkit.connect("memory://") as broker:
        subscription = await broker.subscribe("t", group="g")
        pool = Pool(subscription, handle, admit, size=3, name="pool-test")
        await broker.publish("t", b"quick")
        await broker.publish("t", b"late")
        await until(lambda: len(started) == 2)
        stopping = asyncio.ensure_future(pool.stop(3))
        await asyncio.wait_for(idle_cancelled.wait(), 30)
        # stop() now waits for the two handling; the quick one finishes only after this.
        finish.set()
        await asyncio.wait_for(stopping, 30)
        assert not pool.reading
        # The quick one was acked in time; the late one never settled: one is left, and
        # another subscriber of the group gets it.
        assert (await broker.lag("t", "g")).unhandled == 1
        again = await broker.subscribe("t", group="g")
        delivery = await asyncio.wait_for(anext(again), 30)
        assert delivery.message.body == b"late"
        await delivery.ack()
        await again.close()


async def test_stop_cancels_again_a_worker_that_swallowed_the_cancellation() -> None:
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
        pool = Pool(subscription, handle, admit, size=1, name="pool-test")
        await asyncio.wait_for(admitting.wait(), 10)
        stopping = asyncio.ensure_future(pool.stop())
        done, _ = await asyncio.wait({stopping}, timeout=30)  # about 1 s: one more cancel
        assert done, "stop() is still waiting for the worker"
        stopping.result()
    assert swallowed == 1


async def test_reading_ends_with_the_subscription() -> None:
    async def handle(delivery: Delivery) -> None:
        await delivery.ack()

    async with mqkit.connect("memory://") as broker:
        subscription = await broker.subscribe("t", group="g")
        pool = Pool(subscription, handle, _free, size=2, name="pool-test")
        assert pool.reading
        await subscription.close()
        await until(lambda: not pool.reading)
        await pool.stop(1)


@pytest.mark.parametrize(("take_turns", "ahead"), [(True, 1), (False, 4)])
async def test_idle_workers_take_turns_ahead_only_when_told(take_turns: bool, ahead: int) -> None:
    # A rate limit's turn taken by an idle worker is spent before any message is there: with
    # turns, one worker at a time waits for a delivery holding one; without, every worker.
    admissions = 0
    handled = asyncio.Event()

    async def admit() -> None:
        nonlocal admissions
        admissions += 1

    async def handle(delivery: Delivery) -> None:
        await delivery.ack()
        handled.set()

    async with mqkit.connect("memory://") as broker:
        subscription = await broker.subscribe("t", group="g")
        pool = Pool(subscription, handle, admit, size=4, name="pool-test", take_turns=take_turns)
        await until(lambda: admissions >= ahead)
        for _ in range(20):  # let any worker that could be admitted be admitted
            await asyncio.sleep(0)
        assert admissions == ahead
        await broker.publish("t", b"x")
        await asyncio.wait_for(handled.wait(), 30)
        await pool.stop(5)
