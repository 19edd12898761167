"""RabbitMQ cluster: 20,000 messages through a quorum queue while the node holding its leader
is SIGKILLed, then started again. The publisher and one consumer are connected to that node
and fail over to the next host of the URL; two more consumers are on the other nodes. Nothing
confirmed may be lost, consumption resumes within 30 s, and once the node is back every
consumer is registered on the queue again (the broker counts them)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import mqkit
from tests.support.chaos import Tally, publish_all
from tests.support.services import CLUSTER_URLS, rabbitmq_cluster_consumers, services
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TOTAL = 20_000


def preferring(node: int) -> str:
    """The cluster URL with node `node` (1-3) listed, and so tried, first."""
    head, _, tail = CLUSTER_URLS["rabbitmq-cluster"].partition("@")
    netloc, _, path = tail.partition("/")
    hosts = netloc.split(",")
    hosts = hosts[node - 1 :] + hosts[: node - 1]
    return f"{head}@{','.join(hosts)}/{path}?host_order=listed&publish_timeout=5s"


async def consumers_become(queue: str, n: int, *, within: float) -> int:
    """The consumers RabbitMQ counts on `queue` once they are `n`, or after `within` seconds
    (quorum queues publish the count every few seconds)."""
    deadline = time.monotonic() + within
    while (count := await rabbitmq_cluster_consumers(queue)) != n and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return count


@pytest.mark.timeout(600)
async def test_rabbitmq_cluster_queue_leader_killed() -> None:
    topic, group = f"chaos-failover-{uuid.uuid4().hex[:10]}", "failover"
    queue = f"{topic}:{group}"
    tally = Tally(f"rabbitmq-cluster quorum queue leader SIGKILLed during {TOTAL}")
    confirmed: dict[str, float] = {}
    received_at: list[tuple[float, str]] = []
    brokers = [mqkit.connect(preferring(node)) for node in (1, 2, 3)]
    for broker in brokers:
        await broker.start()
    try:
        # The first subscriber declares the queue, so its leader is on node 1 (client-local).
        subs = [await b.subscribe(topic, group=group, prefetch=100) for b in brokers]
        leader = int(await services("which", "rabbitmq-cluster", f"leader:{queue}"))
        assert await consumers_become(queue, 3, within=30) == 3

        async def consume(sub: mqkit.Subscription) -> None:
            async for delivery in sub:
                tally.received[delivery.message.id] += 1
                received_at.append((time.monotonic(), delivery.message.id))
                await delivery.ack()

        killed = 0.0

        async def kill_leader() -> None:
            nonlocal killed
            await wait_until(lambda: len(confirmed) >= TOTAL // 3, 120, "a third published")
            assert await services("kill", "rabbitmq-cluster", f"leader:{queue}") == str(leader)
            killed = time.monotonic()
            await wait_until(lambda: resumed() is not None, 60, "consumption resumed")
            await services("up", "rabbitmq-cluster")

        def resumed() -> float | None:
            after = [t for t, mid in received_at if t >= killed and confirmed.get(mid, 0) >= killed]
            return min(after) - killed if after else None

        consumers = [asyncio.create_task(consume(s)) for s in subs]
        started = time.monotonic()
        async with mqkit.connect(preferring(leader)) as publisher:
            failures, _ = await asyncio.gather(
                publish_all(publisher, topic, confirmed, TOTAL, pace=0.02), kill_leader()
            )
        tally.sent = set(confirmed)
        await wait_until(lambda: tally.sent <= tally.received.keys(), 180, "all received")
        back = await consumers_become(queue, 3, within=60)
        new_leader = await services("which", "rabbitmq-cluster", f"leader:{queue}")
        for consumer in consumers:
            consumer.cancel()
        for sub in subs:
            await sub.close()
    finally:
        for broker in brokers:
            await broker.close()
    tally.report(
        **{
            "killed node": leader,
            "leader after": new_leader,
            "publish retries": failures,
            "resumed after": f"{resumed() or float('inf'):.1f}s",
            "consumers after": f"{back} of 3",
            "total": f"{time.monotonic() - started:.0f}s",
        }
    )
    assert tally.lost == 0
    assert (resumed() or float("inf")) <= 30.0
    assert back == 3
