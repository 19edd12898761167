"""What an idempotency store does: claim an id, mark it done, or let it go."""

from __future__ import annotations

import enum
from typing import Protocol


class Claim(enum.Enum):
    NEW = "new"  # nobody has it: the caller now holds it for `lease` seconds
    DONE = "done"  # handled before: skip it
    BUSY = "busy"  # someone holds it right now: try again later


class IdempotencyStore(Protocol):
    """Keys are `group:message-id`. A claim expires after `lease` seconds so that a consumer
    that died mid-handler does not block the id forever; a done mark after `ttl` seconds."""

    async def claim(self, key: str, token: str, lease: float) -> Claim: ...

    async def complete(self, key: str, token: str, ttl: float) -> None: ...

    async def release(self, key: str, token: str) -> None:
        """Drop the claim (the handler failed) if `token` still holds it."""
        ...

    async def close(self) -> None: ...
