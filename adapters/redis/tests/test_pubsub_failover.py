"""Pub/sub subscribers follow their channel across failovers on Sentinel and on Redis
Cluster: after the primary is SIGKILLed, or (cluster) demoted by a CLUSTER FAILOVER while it
stays up, messages published afterwards reach the subscriber again, with no new subscribe.
Pub/sub keeps nothing, so what was published during the failover may be gone; the tests
count what arrives after. Also what sharded pub/sub means on a cluster: the subscription is
on the channel's shard, and patterns are refused there (classic pub/sub takes them)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

import mqkit
from mqkit.errors import ConfigurationError, MqkitError
from mqkit.testing.conformance import with_options
from tests.support.services import CLUSTER_URLS, services

pytestmark = pytest.mark.cluster

CLUSTER = CLUSTER_URLS["redis-cluster"].replace("redis+cluster://", "redis+pubsub+cluster://", 1)
SENTINEL = CLUSTER_URLS["redis-sentinel"].replace(
    "redis+sentinel://", "redis+pubsub+sentinel://", 1
)


def channel() -> str:
    return f"ps-{uuid.uuid4().hex[:10]}"


async def received_again(
    broker: mqkit.Broker, sub: mqkit.Subscription, topic: str, since: float, limit: float = 60
) -> float:
    """Publish every 0.2 s until the subscriber receives one of these; seconds from `since`."""
    sent: set[bytes] = set()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        body = uuid.uuid4().hex.encode()
        try:
            await broker.publish(topic, body)
            sent.add(body)
        except MqkitError:
            pass  # the primary is away: the next try
        try:
            while True:
                delivery = await asyncio.wait_for(anext(sub), 0.2)
                if delivery.message.body in sent:
                    return time.monotonic() - since
        except TimeoutError:
            continue
    raise AssertionError(f"nothing published to {topic} reached the subscriber in {limit:.0f}s")


async def first_works(broker: mqkit.Broker, sub: mqkit.Subscription, topic: str) -> None:
    await received_again(broker, sub, topic, time.monotonic(), limit=10)


async def follow(url: str, topic: str, fail: Callable[[], Awaitable[object]]) -> float:
    async with mqkit.connect(url) as broker:
        sub = await broker.subscribe(topic)
        try:
            await first_works(broker, sub, topic)
            await fail()
            return await received_again(broker, sub, topic, time.monotonic())
        finally:
            await sub.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_sentinel_subscriber_follows_the_primary_killed() -> None:
    try:
        resumed = await follow(
            SENTINEL, channel(), lambda: services("kill", "redis-sentinel", "primary")
        )
    finally:
        await services("up", "redis-sentinel")
    print(f"redis+pubsub+sentinel: received again {resumed:.1f}s after the primary's kill")
    assert resumed < 30


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sharded", ["true", "false"])
async def test_cluster_subscriber_follows_its_shard_primary_killed(sharded: str) -> None:
    topic = channel()
    try:
        resumed = await follow(
            with_options(CLUSTER, f"sharded={sharded}"),
            topic,
            lambda: services("kill", "redis-cluster", f"primary:{topic}"),
        )
    finally:
        await services("up", "redis-cluster")
    print(f"redis+pubsub+cluster sharded={sharded}: received again {resumed:.1f}s after the kill")
    assert resumed < 30


async def replica_takes_over(topic: str) -> None:
    """CLUSTER FAILOVER on the replica of the primary that serves `topic`'s slot: the two
    swap roles, both stay up, and Redis unsubscribes the old primary's shard listeners."""
    primary_port = 7000 + int(await services("which", "redis-cluster", f"primary:{topic}")) - 1
    primary = aioredis.Redis(port=primary_port, decode_responses=True)
    try:
        myid = await primary.execute_command("CLUSTER", "MYID")
        [line] = await primary.execute_command("CLUSTER", "REPLICAS", myid)
    finally:
        await primary.aclose()
    replica_port = int(line.split()[1].split("@")[0].rsplit(":", 1)[1])
    replica = aioredis.Redis(port=replica_port, decode_responses=True)
    try:
        await replica.execute_command("CLUSTER", "FAILOVER")
        deadline = time.monotonic() + 30
        while (await replica.info("replication"))["role"] != "master":
            assert time.monotonic() < deadline, "the replica did not take over"
            await asyncio.sleep(0.1)
    finally:
        await replica.aclose()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_sharded_subscriber_follows_a_graceful_failover() -> None:
    topic = channel()
    resumed = await follow(CLUSTER, topic, lambda: replica_takes_over(topic))
    print(f"redis+pubsub+cluster: received again {resumed:.1f}s after CLUSTER FAILOVER")
    assert resumed < 30


def _count(reply: list[object]) -> int:
    """The count of a one-channel PUBSUB NUMSUB or SHARDNUMSUB: [channel, n] as Redis
    sends it, or [(channel, n)] as redis-py parses NUMSUB."""
    flat = [x for item in reply for x in (item if isinstance(item, tuple) else (item,))]
    return int(str(flat[1]))


async def listening(topic: str) -> dict[str, dict[int, int]]:
    """Who listens to `topic`, per node: {"classic": {port: n}, "sharded": {port: n}}."""
    found: dict[str, dict[int, int]] = {"classic": {}, "sharded": {}}
    for port in range(7000, 7006):
        node = aioredis.Redis(port=port)
        try:
            for kind, command in (("classic", "NUMSUB"), ("sharded", "SHARDNUMSUB")):
                n = _count(await node.execute_command("PUBSUB", command, topic))
                if n:
                    found[kind][port] = n
        finally:
            await node.aclose()
    return found


@pytest.mark.parametrize("option, sharded", [("", True), ("?sharded=false", False)])
async def test_auto_is_sharded_on_redis_7_and_listens_on_the_channels_shard(
    option: str, sharded: bool
) -> None:
    topic = channel()
    async with mqkit.connect(CLUSTER + option) as broker:
        assert broker.sharded is sharded  # type: ignore[attr-defined]
        sub = await broker.subscribe(topic)
        try:
            found = await listening(topic)
        finally:
            await sub.close()
    if sharded:
        primary = 7000 + int(await services("which", "redis-cluster", f"primary:{topic}")) - 1
        assert found == {"classic": {}, "sharded": {primary: 1}}
    else:
        assert found["sharded"] == {} and sum(found["classic"].values()) == 1


async def test_patterns_are_refused_sharded_and_work_classic() -> None:
    prefix = channel()
    async with mqkit.connect(CLUSTER) as broker:
        with pytest.raises(ConfigurationError, match=r"sharded=false"):
            await broker.subscribe(f"{prefix}.*")
    async with mqkit.connect(CLUSTER + "?sharded=false") as broker:
        sub = await broker.subscribe(f"{prefix}.*")
        try:
            await broker.publish(f"{prefix}.a", b"1")
            delivery = await asyncio.wait_for(anext(sub), 10)
        finally:
            await sub.close()
    assert (delivery.message.topic, delivery.message.body) == (f"{prefix}.a", b"1")
