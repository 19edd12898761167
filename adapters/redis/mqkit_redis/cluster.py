"""`redis+cluster://[user:pass@]host:7000,host:7001,host:7002`: Redis Cluster. The hosts are
where the client starts; it learns every node and slot from them and follows the slots as
they move and as replicas take over from dead primaries. Only database 0 exists there."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS

from mqkit.errors import ConfigurationError
from mqkit.urls import host_ports, mask

SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})


def startup_nodes(url: str) -> list[tuple[str, int]]:
    if urlsplit(url).path.strip("/") not in ("", "0"):
        raise ConfigurationError(f"Redis Cluster has only database 0, not {mask(url)}")
    return host_ports(url, 6379)


class StartedCluster(RedisCluster):
    """RedisCluster that learns the cluster before its first command runs. With redis-py
    8.1, commands started together on a new client raced its start: 1 to 7 of 20 concurrent
    SETs failed with "'NoneType' object has no attribute 'writelines'"; with the client
    started first, none did."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()  # under redis-py's own lock: once
        return await super().execute_command(*args, **kwargs)


def connect(url: str, **connection: Any) -> RedisCluster:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    for name, value in parse_qsl(parts.query):
        if name in URL_QUERY_ARGUMENT_PARSERS:
            connection[name] = URL_QUERY_ARGUMENT_PARSERS[name](value)
    # The cluster client retries itself, moving to where a slot went (MOVED, ASK, a failover).
    connection.pop("retry_on_error", None)
    return StartedCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in startup_nodes(url)],
        username=unquote(user) or None,
        password=unquote(password) or None,
        ssl=parts.scheme.startswith("rediss"),
        **connection,
    )
