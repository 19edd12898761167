"""Redis pub/sub beyond the conformance suite, on the server at $MQKIT_TEST_REDIS_URL:
glob-pattern subscriptions, and `?sharded`, which only a cluster URL takes."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

import mqkit
from mqkit.errors import ConfigurationError

REDIS = os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PUBSUB = REDIS.replace("redis://", "redis+pubsub://", 1)


async def test_a_pattern_receives_every_matching_channel_and_names_it() -> None:
    prefix = f"pat-{uuid.uuid4().hex[:8]}"
    async with mqkit.connect(PUBSUB) as broker:
        sub = await broker.subscribe(f"{prefix}.*")
        try:
            await broker.publish(f"{prefix}.a", b"1")
            await broker.publish(f"other-{prefix}", b"not this")
            await broker.publish(f"{prefix}.b", b"2")
            got = [(await asyncio.wait_for(anext(sub), 10)).message for _ in range(2)]
        finally:
            await sub.close()
    assert [(m.topic, m.body) for m in got] == [(f"{prefix}.a", b"1"), (f"{prefix}.b", b"2")]


def test_sharded_is_refused_off_a_cluster() -> None:
    with pytest.raises(ConfigurationError, match=r"Redis Cluster \(redis\+pubsub\+cluster"):
        mqkit.connect(PUBSUB + "?sharded=true")
