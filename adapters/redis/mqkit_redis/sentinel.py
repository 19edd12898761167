"""`redis+sentinel://[user:pass@]s1:26379,s2:26379,s3:26379/MASTER/DB`: the primary that the
Sentinels name, found again after every failover.

redis-py finds a new primary only when a command on the old one fails (redis-py #3867): a
connection to an old primary that is still up (demoted, or cut off from the Sentinels by a
partition) keeps taking writes that its successor never sees. So the pool here also listens
on a Sentinel for `+switch-master` and drops every connection, those in use too, the moment
Sentinel announces a new primary."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mqkit.errors import ConfigurationError
from mqkit.urls import host_ports, mask

log = logging.getLogger("mqkit.redis")

SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    master: str
    db: int
    username: str | None
    password: str | None
    tls: bool


def parse(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    sentinels = host_ports(url, 26379)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigurationError(
            f"a Sentinel URL names the Sentinels and the master, "
            f"redis+sentinel://host:26379,host:26380/MASTER/0, not {mask(url)}"
        )
    try:
        db = int(path[1]) if len(path) > 1 else 0
    except ValueError:
        raise ConfigurationError(f"the database in {mask(url)} is not a number") from None
    return SentinelTarget(
        sentinels=sentinels,
        master=unquote(path[0]),
        db=db,
        username=unquote(user) or None,
        password=unquote(password) or None,
        tls=parts.scheme.startswith("rediss"),
    )


class FollowingPool(SentinelConnectionPool):
    """A Sentinel pool that also follows `+switch-master` (see the module's docstring)."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._follow: asyncio.Task[None] | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._follow is None or self._follow.done():
            self._follow = asyncio.create_task(self._follow_switches(), name="mqkit-sentinel")
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def disconnect(self, inuse_connections: bool = True) -> None:
        # Called with inuse_connections=False by redis-py itself on a new master address,
        # and with True when the client closes: only then does the listener stop.
        if inuse_connections and self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
            self._follow = None
        await super().disconnect(inuse_connections)

    async def _follow_switches(self) -> None:
        # Its own connections: the manager's have a socket timeout, which an idle
        # subscription would run into every few seconds.
        addresses = [(s.connection_pool.connection_kwargs["host"],
                      s.connection_pool.connection_kwargs["port"])
                     for s in self.sentinel_manager.sentinels]  # fmt: skip
        at = 0
        while True:
            host, port = addresses[at % len(addresses)]
            at += 1
            listener = aioredis.Redis(
                host=host, port=port, socket_connect_timeout=5.0, socket_keepalive=True,
                health_check_interval=15,
            )  # fmt: skip
            try:
                async with listener.pubsub() as pubsub:
                    await pubsub.subscribe("+switch-master")
                    async for event in pubsub.listen():
                        if event.get("type") == "message" and _names(event, self.service_name):
                            log.info("mqkit: Sentinel switched %s: %s", self.service_name, event)
                            self.master_address = None
                            await SentinelConnectionPool.disconnect(self, inuse_connections=True)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.debug("mqkit: following Sentinel switches at %s:%s: %r", host, port, exc)
            finally:
                await listener.aclose()
            await asyncio.sleep(0.5)


def _names(event: dict[str, Any], service: str) -> bool:
    """`+switch-master` says `<master> <old ip> <old port> <new ip> <new port>`."""
    data = event.get("data", b"")
    text = data.decode() if isinstance(data, bytes) else str(data)
    return text.split(" ", 1)[0] == service


def connect(url: str, **connection: Any) -> aioredis.Redis:
    """A client of the primary, with `connection` (timeouts, retries, ...) for its
    connections and the Sentinels' own."""
    target = parse(url)
    sentinel_kwargs = {
        k: v for k, v in connection.items() if k in ("socket_connect_timeout", "socket_keepalive")
    }
    sentinel_kwargs["socket_timeout"] = connection.get("socket_connect_timeout", 5.0)
    manager = Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    # The redis-py options of the query (`?socket_timeout=1`, ...), as from_url reads them.
    for name, value in parse_qsl(urlsplit(url).query):
        if name in URL_QUERY_ARGUMENT_PARSERS:
            connection[name] = URL_QUERY_ARGUMENT_PARSERS[name](value)
    client: aioredis.Redis = manager.master_for(
        target.master,
        redis_class=aioredis.Redis,
        connection_pool_class=FollowingPool,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        **connection,
    )
    return client
