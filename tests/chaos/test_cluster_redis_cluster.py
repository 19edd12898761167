"""Redis Cluster: 20,000 messages while the primary serving the topic's slot (its stream,
retry streams and delay sets are all in it) is SIGKILLed at a third; its replica takes over
after cluster-node-timeout (3 s) and the old primary comes back as a replica. Replication is
asynchronous and mqkit cannot wait for replicas on a cluster (see ?wait), so the case reports
what was lost rather than requiring none; consumption must resume within 30 s, the 1,000
messages delayed from just before the kill included."""

from __future__ import annotations

import uuid

import pytest

import mqkit
from tests.support.chaos import Tally, fail_over
from tests.support.services import CLUSTER_URLS, services

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TOTAL = 20_000


@pytest.mark.timeout(600)
async def test_redis_cluster_primary_killed() -> None:
    topic = f"chaos-rcluster-{uuid.uuid4().hex[:10]}"
    tally = Tally(f"redis-cluster primary of the topic's slot SIGKILLed during {TOTAL}")
    async with mqkit.connect(CLUSTER_URLS["redis-cluster"] + "?lease=5s") as broker:
        seen = await fail_over(
            broker,
            topic,
            tally,
            TOTAL,
            kill=lambda: services("kill", "redis-cluster", f"primary:{topic}"),
            restart=lambda: services("up", "redis-cluster"),
        )
    primary_after = await services("which", "redis-cluster", f"primary:{topic}")
    tally.report(**seen.counts(**{"primary after": primary_after}))
    assert seen.resumed <= 30.0
