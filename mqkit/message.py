"""The message: what is published, stored, delivered, retried and dead-lettered."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from mqkit import codec
from mqkit.ids import new_id

T = TypeVar("T")

# Headers mqkit owns carry this prefix on the wire; docs/design.md lists them.
HEADER_PREFIX = "mqkit-"


@dataclass(frozen=True, slots=True)
class Message:
    """An immutable message.

    `id` is assigned once, when the message is created, and survives retries, relays, the
    dead-letter queue and replay. `attempt` is the delivery attempt: 0 before the first
    delivery, 1 on the first, and so on.
    """

    topic: str
    body: bytes
    id: str = field(default_factory=new_id)
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = codec.OCTET_STREAM
    timestamp: float = field(default_factory=time.time)
    attempt: int = 0

    @classmethod
    def create(
        cls,
        topic: str,
        payload: Any = b"",
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
        content_type: str | None = None,
    ) -> Message:
        """Build a message from any supported payload: bytes, str, a pydantic model or JSON."""
        body, detected = codec.encode(payload)
        return cls(
            topic=topic,
            body=body,
            id=id or new_id(),
            key=key,
            headers=dict(headers) if headers else {},
            content_type=content_type or detected,
        )

    @property
    def size(self) -> int:
        """Bytes counted against a broker's message size limit."""
        n = len(self.body) + len(self.key or "") + len(self.id) + len(self.content_type)
        for k, v in self.headers.items():
            n += len(k) + len(v)
        return n

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)

    def decode(self, into: type[T]) -> T:
        """The body as `into` (bytes, str, dict, a pydantic model, ...); DecodeError if not."""
        decoded: T = codec.decode(self.body, self.content_type, into)
        return decoded

    def with_changes(self, **changes: Any) -> Message:
        return replace(self, **changes)
