"""Redis with Sentinel: 20,000 messages while the primary is SIGKILLed at a third and a replica
takes its place (the old primary is then started again, as a replica). Replication is
asynchronous: without `wait`, acknowledged entries the primary had not yet passed on are lost,
and the case reports how many; with `?wait=1` a publish returns only once a replica has it,
and nothing acknowledged may be lost. 1,000 of the messages are delayed by 3 s from just
before the kill, so the scheduler must follow the new primary too, as must the consumers."""

from __future__ import annotations

import uuid

import pytest

import mqkit
from tests.support.chaos import Tally, fail_over
from tests.support.services import CLUSTER_URLS, services

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TOTAL = 20_000


@pytest.mark.timeout(600)
@pytest.mark.parametrize("wait", ["0", "1"])
async def test_redis_sentinel_primary_killed(wait: str) -> None:
    topic = f"chaos-sentinel-{uuid.uuid4().hex[:10]}"
    url = CLUSTER_URLS["redis-sentinel"] + f"?wait={wait}&lease=5s"
    tally = Tally(f"redis-sentinel primary SIGKILLed during {TOTAL}, wait={wait}")
    async with mqkit.connect(url) as broker:
        seen = await fail_over(
            broker,
            topic,
            tally,
            TOTAL,
            kill=lambda: services("kill", "redis-sentinel", "primary"),
            restart=lambda: services("up", "redis-sentinel"),
        )
    primary_after = await services("which", "redis-sentinel", "primary")
    tally.report(**seen.counts(**{"primary after": primary_after}))
    assert seen.resumed <= 30.0
    if wait == "1":
        assert tally.lost == 0
