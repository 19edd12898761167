"""Connecting to Redis: mqkit's URL options split from redis-py's, retries, typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mqkit import options
from mqkit.deadline import within_deadline
from mqkit.errors import BrokerUnavailableError
from mqkit.leasing import LEASE
from mqkit.urls import mask
from mqkit_redis import cluster, sentinel

T = TypeVar("T")

# A client of one server (also the primary Sentinel names) or of a Redis Cluster: the
# commands mqkit sends are the same; a cluster routes each by its key's slot.
Client: TypeAlias = aioredis.Redis | RedisCluster

# What mqkit reads from a Redis URL; redis-py gets the rest (CLIENT_OPTIONS).
MAXLEN = options.integer("maxlen", "1000000", "streams are trimmed to about this many entries")
PREFIX = options.text("prefix", "mqkit:", "what every key mqkit writes starts with")
BLOCK = options.duration("block", "100ms", "how long one XREADGROUP waits for entries")
WAIT = options.integer(
    "wait", "0", "replicas that must have each publish before it returns (Redis WAIT); 0: none"
)
WAIT_TIMEOUT = options.duration(
    "wait_timeout", "1s", "how long a publish waits for `wait` replicas before it fails"
)
MQKIT_OPTIONS = {
    o.name for o in (*options.COMMON, LEASE, MAXLEN, PREFIX, BLOCK, WAIT, WAIT_TIMEOUT)
}
# The query options redis-py reads from a URL itself, and connection keywords it passes on.
CLIENT_OPTIONS = frozenset(
    {*URL_QUERY_ARGUMENT_PARSERS, "password", "username", "client_name", "ssl_keyfile",
     "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_ca_data",
     "ssl_password", "encoding", "encoding_errors"}
)  # fmt: skip

NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# What a Redis Cluster answers while it fails over (CLUSTERDOWN, TRYAGAIN, a slot that no
# node serves yet, redirections past redis-py's limit): gone once a replica has taken over.
FAILOVER_ERRORS = (ClusterError, TryAgainError, SlotNotCoveredError)


def topology(scheme: str) -> str:
    """The servers a scheme names, without the backend: `redis+pubsub+cluster` is a Redis
    Cluster as `redis+cluster` is, `redis+pubsub` one server as `redis` is."""
    return scheme.replace("+pubsub", "", 1)


def redis_url(url: str) -> str:
    """The URL as redis-py wants it: redis:// scheme, without mqkit's own options."""
    parts = urlsplit(url)
    scheme = topology(parts.scheme)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in MQKIT_OPTIONS]
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(query)))


def connect(
    url: str,
    *,
    socket_timeout: float | None = None,
    connect_timeout: float = 5.0,
    retries: int = 3,
) -> Client:
    """The one way mqkit makes a Redis client (brokers, stores, limiters): keepalive, health
    checks, and commands retried through short outages (a restart, a failover). A
    `redis+sentinel://` URL gives a client of the primary its Sentinels name (sentinel.py),
    a `redis+cluster://` one a client of the cluster (cluster.py); `+pubsub` in the scheme
    changes nothing here.

    `socket_timeout` None suits the brokers, whose XREADGROUP BLOCK and pub/sub reads wait
    on purpose; the stores bound each command. `retries=0` suits a caller that has an
    outage policy of its own (the shared limiter) and must learn of an outage at once."""
    connection: dict[str, Any] = {
        "decode_responses": False,
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    scheme = topology(urlsplit(url).scheme)
    if scheme in sentinel.SCHEMES:
        return sentinel.connect(url, **connection)
    if scheme in cluster.SCHEMES:
        return cluster.connect(url, **connection)
    return aioredis.Redis.from_url(redis_url(url), **connection)


# A command of a store answers in milliseconds; past this Redis is taken to be away.
STORE_TIMEOUT = 5.0


def store_client(
    url: str | None,
    client: Any,
    *,
    socket_timeout: float = STORE_TIMEOUT,
    connect_timeout: float = 5.0,
    retries: int = 3,
) -> tuple[Client, bool]:
    """A store's client: the caller's `client` (which the store must not close), or one made
    from `url` by `connect`; and whether the store owns it."""
    if (url is None) == (client is None):
        raise ValueError("give either a Redis URL or a client")
    if client is not None:
        return client, False
    assert url is not None
    made = connect(
        url, socket_timeout=socket_timeout, connect_timeout=connect_timeout, retries=retries
    )
    return made, True


async def ping(client: Client, url: str) -> None:
    try:
        await asyncio.wait_for(client.ping(), 10)
    except (*NETWORK_ERRORS, TimeoutError) as exc:
        raise BrokerUnavailableError(f"cannot reach Redis at {mask(url)}: {exc}") from exc


async def within(timeout: float, url: str, what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run a publish, turning an outage (or a cluster's failover) into a typed error within
    `timeout` seconds."""
    return await within_deadline(
        call,
        timeout=timeout,
        what=f"{what} to Redis at {mask(url)}",
        retry=(*NETWORK_ERRORS, *FAILOVER_ERRORS),
    )
