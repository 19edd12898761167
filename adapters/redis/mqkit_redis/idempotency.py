"""An idempotency store in Redis (SET NX with a TTL): shared by every worker, on any host."""

from __future__ import annotations

from typing import Any

from mqkit.idempotency.store import Claim
from mqkit_redis import client as redis_client

_DONE = b"done"  # tokens are 32 hex digits, so never this

# Release only our own claim: after our lease ran out another consumer may hold the key.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore:
    """`RedisStore("redis://host:6379/0")` or `RedisStore(client=existing_client)`.

    Expiry is Redis's own (PX), so the workers' clocks need not agree.
    """

    def __init__(
        self, url: str | None = None, *, client: Any = None, prefix: str = "mqkit:processed:"
    ) -> None:
        self.client, self._owns = redis_client.store_client(url, client)
        self.prefix = prefix
        self._release = self.client.register_script(_RELEASE)

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        name = self.prefix + key
        if await self.client.set(name, token, nx=True, px=_ms(lease)):
            return Claim.NEW
        held = await self.client.get(name)
        if held is None:  # expired between the two commands: try once more
            return (
                Claim.NEW
                if await self.client.set(name, token, nx=True, px=_ms(lease))
                else Claim.BUSY
            )
        return Claim.DONE if held == _DONE else Claim.BUSY

    async def complete(self, key: str, token: str, ttl: float) -> None:
        await self.client.set(self.prefix + key, _DONE, px=_ms(ttl))

    async def release(self, key: str, token: str) -> None:
        await self._release(keys=[self.prefix + key], args=[token])

    async def close(self) -> None:
        if self._owns:
            await self.client.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
