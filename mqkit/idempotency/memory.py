"""An idempotency store in this process's memory: for tests and single-process workers."""

from __future__ import annotations

import time
from collections.abc import Callable

from mqkit.idempotency.store import Claim

_DONE = "done"  # tokens are 32 hex digits, so never this


class MemoryStore:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, tuple[str, float]] = {}  # key -> (token or _DONE, expires)
        self._clock = clock

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        now = self._clock()
        held = self._entries.get(key)
        if held is not None and held[1] > now:
            return Claim.DONE if held[0] == _DONE else Claim.BUSY
        self._entries[key] = (token, now + lease)
        if len(self._entries) > 10_000 and len(self._entries) % 1_000 == 0:
            self._drop_expired(now)
        return Claim.NEW

    async def complete(self, key: str, token: str, ttl: float) -> None:
        self._entries[key] = (_DONE, self._clock() + ttl)

    async def release(self, key: str, token: str) -> None:
        held = self._entries.get(key)
        if held is not None and held[0] == token:
            del self._entries[key]

    async def close(self) -> None:
        """Nothing to let go of; the marks live as long as the store object."""

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]
