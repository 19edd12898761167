"""Chaos 4: Kafka consumers join and leave a group every few seconds during 20,000 messages.

Nothing is lost, no CommitFailedError (or any other error) reaches the consuming code, and
within 30 s of the last change everything is handled and committed: the group's lag is 0."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import mqkit
from tests.support.chaos import Tally
from tests.support.services import URLS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

TOTAL = 20_000
GROUP = "storm"
CHANGES = ["+", "+", "-", "+", "-", "-", "+", "-"]  # every 3 s, starting from 2 members


class Member:
    """One consumer process's worth: its own broker connection and subscription."""

    def __init__(self, topic: str, tally: Tally, errors: list[BaseException]) -> None:
        self.topic, self.tally, self.errors = topic, tally, errors
        self.broker = mqkit.connect(URLS["kafka"])
        self.task: asyncio.Task[None] | None = None
        self.sub: mqkit.Subscription | None = None

    async def join(self) -> Member:
        await self.broker.start()
        self.sub = await self.broker.subscribe(self.topic, group=GROUP, prefetch=200)
        self.task = asyncio.create_task(self._consume())
        return self

    async def _consume(self) -> None:
        assert self.sub is not None
        try:
            async for delivery in self.sub:
                self.tally.received[delivery.message.id] += 1
                await delivery.ack()
        except Exception as exc:  # anything here reached user code
            self.errors.append(exc)

    async def leave(self) -> None:
        assert self.sub is not None and self.task is not None
        await self.sub.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 10)
        await self.broker.close()


async def lag(topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=URLS["kafka"].removeprefix("kafka://"))
    probe = AIOKafkaConsumer(bootstrap_servers=URLS["kafka"].removeprefix("kafka://"))
    await admin.start()
    await probe.start()
    try:
        committed = await admin.list_consumer_group_offsets(GROUP)
        partitions = [TopicPartition(topic, p) for p in probe.partitions_for_topic(topic) or ()]
        ends = await probe.end_offsets(partitions)
        return sum(
            end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()
        )
    finally:
        await probe.stop()
        await admin.close()


@pytest.mark.timeout(240)
async def test_consumers_come_and_go() -> None:
    topic = f"chaos-storm-{uuid.uuid4().hex[:8]}"
    tally = Tally(f"kafka {len(CHANGES)} membership changes during {TOTAL}")
    errors: list[BaseException] = []
    members = [await Member(topic, tally, errors).join() for _ in range(2)]
    async with mqkit.connect(URLS["kafka"]) as producer:

        async def publish() -> None:
            for i in range(0, TOTAL, 200):
                batch = [
                    mqkit.Message.create(topic, f"m{i + j}", key=f"k{j % 50}") for j in range(200)
                ]
                await producer.publish_batch(batch)
                tally.sent.update(m.id for m in batch)
                await asyncio.sleep(0.2)  # about 1,000/s: the storm lasts as long as the load

        async def storm() -> None:
            for change in CHANGES:
                await asyncio.sleep(3)
                if change == "+":
                    members.append(await Member(topic, tally, errors).join())
                else:
                    await members.pop(0).leave()

        await asyncio.gather(publish(), storm())
    last_change = time.monotonic()
    try:
        await wait_until(lambda: tally.sent <= tally.received.keys(), 30, "all handled")
        remaining = await lag(topic)
        while remaining and time.monotonic() - last_change < 30:
            await asyncio.sleep(0.5)
            remaining = await lag(topic)
        settled = time.monotonic() - last_change
    finally:
        for member in members:
            await member.leave()
    tally.report(
        members=f"{len(members)} at the end",
        errors=len(errors),
        lag=remaining,
        **{"lag 0 after": f"{settled:.1f}s"},
    )
    assert errors == []
    assert tally.lost == 0
    assert remaining == 0
