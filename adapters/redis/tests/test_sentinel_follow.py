"""A failover that Sentinel announces reaches even the connections in use: they are dropped at
`+switch-master`, so none keeps talking to the old primary, which stays up (a forced
failover demotes it rather than killing it)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis.asyncio as aioredis
from mqkit_redis.client import connect

from tests.support.services import services

pytestmark = pytest.mark.cluster

SENTINEL = os.environ.get(
    "MQKIT_TEST_REDIS_SENTINEL_URL",
    "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/mqkit/0",
)


async def test_a_connection_in_use_is_dropped_when_sentinel_switches_the_primary() -> None:
    client = connect(SENTINEL)
    sentinel = aioredis.Redis(host="127.0.0.1", port=26379)
    try:
        await client.ping()  # starts the pool's listener
        held = await client.connection_pool.get_connection()
        old = (held.host, held.port)
        assert held.is_connected
        await asyncio.sleep(0.5)  # the listener has subscribed
        await sentinel.execute_command("SENTINEL", "FAILOVER", "mqkit")
        deadline = time.monotonic() + 30
        while held.is_connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not held.is_connected, "still connected to the old primary"
        await client.connection_pool.release(held)
        new = await sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mqkit")
        assert (new[0].decode(), int(new[1])) != old
        assert await client.set("after-failover", b"1")
    finally:
        await sentinel.aclose()
        await client.aclose()
        await services("up", "redis-sentinel")  # whole again: the demoted node in sync
