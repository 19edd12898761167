"""Pub/sub on Redis Cluster (`redis+pubsub+cluster://`): sharded or classic, and where to
listen.

Classic pub/sub (PUBLISH, SUBSCRIBE, PSUBSCRIBE) sends every message over the cluster bus to
every node, so a subscriber may listen on any node, and patterns work. Sharded pub/sub
(Redis 7: SPUBLISH, SSUBSCRIBE) keeps a channel's messages on the shard that owns the
channel's slot, as a key would be: it scales with the shards, but has no patterns, and a
subscriber must listen on that shard. The two do not see each other's messages, so every
publisher and subscriber of a channel must use the same (`?sharded=`, the same URL).

A subscriber listens on one node, on a connection of its own, and after a failover (the
node gone, or Redis telling it with SUNSUBSCRIBE that the slot moved) listens again where
the cluster's slot map now says.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import RedisClusterException

from mqkit import options
from mqkit.errors import ConfigurationError
from mqkit.message import Message
from mqkit_redis import client
from mqkit_redis.cluster import SCHEMES as CLUSTER_SCHEMES

SHARDED = options.choice(
    "sharded",
    "auto",
    ("auto", "true", "false"),
    "on Redis Cluster, sharded pub/sub (SPUBLISH/SSUBSCRIBE, no patterns) or classic; "
    "auto: sharded where the servers have it (Redis 7)",
)


def on_cluster(url: str) -> bool:
    return client.topology(urlsplit(url).scheme) in CLUSTER_SCHEMES


async def use_sharded(cluster: RedisCluster, choice: str) -> bool:
    if choice != "auto":
        return choice == "true"
    node = cluster.get_random_node()
    info = await cluster.execute_command("INFO", "server", target_nodes=node)
    major = str(info.get("redis_version", "0")).split(".", 1)[0]
    return int(major) >= 7 if major.isdigit() else False


def refuse_pattern(topic: str) -> None:
    raise ConfigurationError(
        f"sharded pub/sub has no patterns, so {topic!r} cannot be subscribed to: subscribe "
        f"to exact channels, or give ?sharded=false to every publisher and subscriber"
    )


async def node_for(cluster: RedisCluster, channel: str, sharded: bool) -> ClusterNode:
    """Where to listen now: the primary of the channel's slot (sharded), else any primary.
    The slot map is read again first: after a failover it names the new primary."""
    await cluster.nodes_manager.initialize()
    node = cluster.get_node_from_key(channel) if sharded else random.choice(cluster.get_primaries())
    if node is None:
        raise RedisClusterException(f"no node has the slot of {channel!r} yet")
    return node


async def publish_classic(
    cluster: RedisCluster, messages: Sequence[Message], encode: Callable[[Message], bytes]
) -> None:
    """PUBLISH each message, one after another, on the node that serves its channel's slot:
    redis-py would send each to a random primary (and refuses PUBLISH in a cluster
    pipeline), and messages relayed from different nodes may overtake each other."""
    try:
        for message in messages:
            node = cluster.get_node_from_key(message.topic)
            data = encode(message)
            await cluster.execute_command("PUBLISH", message.topic, data, target_nodes=node)
    except (*client.NETWORK_ERRORS, *client.FAILOVER_ERRORS):
        # Sent to a node named explicitly, a command does not make redis-py learn that the
        # node died; the next try must ask where the slot went.
        with contextlib.suppress(*client.NETWORK_ERRORS, RedisClusterException):
            await cluster.nodes_manager.initialize()
        raise


def node_client(node: ClusterNode) -> aioredis.Redis:
    """A client of one node, with the cluster's connection settings (password, TLS,
    timeouts), on a pool of its own that closes with it: a subscribed connection never
    goes back to the cluster's pool for commands."""
    pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
    return aioredis.Redis.from_pool(pool)
