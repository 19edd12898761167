"""GCRA shared through Redis: one limit for every process on every host.

One Lua script reads the key's theoretical arrival time, books the next slot and sets the
key to expire once it no longer matters, atomically. The time is the Redis server's
(`TIME`), so the clients' clocks need not agree.

When Redis cannot be reached the limiter does what `on_outage` says:
- "pause" (fail closed, the default): no slot is granted until Redis answers again; callers
  waiting without a deadline wait, with one, get RateLimitedError at it.
- "local" (fail open): each process falls back to a local limit of rate / `workers`, so the
  sum stays near the shared limit as long as `workers` is how many share it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mqkit.errors import ConfigurationError
from mqkit.ratelimit.limiter import Outage, Permit, Rate, check_burst
from mqkit.ratelimit.local import LocalLimiter
from mqkit.urls import mask
from mqkit_redis import client as redis_client

log = logging.getLogger("mqkit.ratelimit")

# Microseconds throughout: integers that a Lua double holds exactly (epoch us < 2^53).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat + (cost - 1) * interval - tolerance - now
if wait < 0 then wait = 0 end
if max_wait >= 0 and wait > max_wait then return {0, wait} end
local booked = tat + cost * interval
redis.call('SET', KEYS[1], string.format('%.0f', booked), 'PX',
           math.ceil((booked - now) / 1000) + 1000)
return {1, wait}
"""
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisLimiter:
    """`RedisLimiter("redis://host:6379/0", rate="200/s", burst=50, name="billing")`, or
    `client=` an existing redis.asyncio client. Keys are independent limits under `name`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        rate: Rate | str | float,
        burst: int = 1,
        name: str = "default",
        client: Any = None,
        on_outage: Outage = "pause",
        workers: int = 1,
        outage_retry: float = 1.0,
        prefix: str = "mqkit:rate:",
    ) -> None:
        if on_outage not in ("pause", "local"):
            raise ConfigurationError(f"on_outage must be 'pause' or 'local', not {on_outage!r}")
        if workers < 1:
            raise ConfigurationError(f"workers must be at least 1, not {workers!r}")
        self.rate = Rate.parse(rate)
        self.burst = check_burst(burst)
        self.name = name
        self.on_outage = on_outage
        self.outage_retry = outage_retry
        self.url = mask(url) if url else "the given Redis client"
        # Short socket timeouts and no retries: an unreachable Redis is an outage in a
        # second, not in minutes, and the outage policy (pause or local) is this class's.
        self.client, self._owns = redis_client.store_client(
            url, client, socket_timeout=1.0, connect_timeout=1.0, retries=0
        )
        self._script = self.client.register_script(_RESERVE)
        self._prefix = f"{prefix}{name}:"
        self._fallback = LocalLimiter(
            self.rate.per_second / workers, burst=max(1, self.burst // workers)
        )
        self.in_outage = False

    async def reserve(self, key: str = "", *, max_wait: float = math.inf, cost: int = 1) -> Permit:
        while True:
            try:
                granted, wait_us = await self._script(
                    keys=[self._prefix + key],
                    args=[
                        round(self.rate.interval * 1e6),
                        round((self.burst - 1) * self.rate.interval * 1e6),
                        -1 if math.isinf(max_wait) else round(max_wait * 1e6),
                        cost,
                    ],
                )
            except _UNREACHABLE as exc:
                self._note_outage(exc)
                if self.on_outage == "local":
                    return await self._fallback.reserve(key, max_wait=max_wait, cost=cost)
                if max_wait < self.outage_retry:
                    return Permit(False, self.outage_retry)
                await asyncio.sleep(self.outage_retry)  # paused until Redis answers
                max_wait -= self.outage_retry
                continue
            if self.in_outage:
                self.in_outage = False
                log.warning("mqkit: rate limit %r: Redis at %s answers again", self.name, self.url)
            return Permit(bool(granted), int(wait_us) / 1e6)

    def _note_outage(self, exc: Exception) -> None:
        if not self.in_outage:
            self.in_outage = True
            what = "pausing" if self.on_outage == "pause" else "a local limit meanwhile"
            log.warning(
                "mqkit: rate limit %r: Redis at %s unreachable (%s); %s",
                self.name, self.url, exc, what,
            )  # fmt: skip

    async def close(self) -> None:
        if self._owns:
            await self.client.aclose()
