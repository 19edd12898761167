"""Messages as Kafka records: key, value, timestamp and headers.

mqkit's own headers are `mqkit-id`, `mqkit-content-type`, `mqkit-attempt` (deliveries before
this copy was written) and `mqkit-not-before` (Unix ms; the record is held until then). A
record from another producer has none of them and is read with an id derived from its
position, which stays the same on every redelivery.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

from mqkit import codec
from mqkit.message import Message
from mqkit.wire import ATTEMPT, CONTENT_TYPE, ID, NOT_BEFORE

OWN = {ID, CONTENT_TYPE, ATTEMPT, NOT_BEFORE}


def to_record(
    message: Message, *, attempt: int = 0, not_before_ms: int | None = None
) -> dict[str, Any]:
    headers = [(ID, message.id.encode()), (CONTENT_TYPE, message.content_type.encode())]
    if attempt:
        headers.append((ATTEMPT, str(attempt).encode()))
    if not_before_ms is not None:
        headers.append((NOT_BEFORE, str(not_before_ms).encode()))
    headers += [(k, v.encode()) for k, v in message.headers.items()]
    return {
        "value": message.body,
        "key": message.key.encode() if message.key is not None else None,
        "timestamp_ms": int(message.timestamp * 1000),
        "headers": headers,
    }


def to_records(
    messages: Sequence[Message], delay: float | None
) -> list[tuple[str, dict[str, Any]]]:
    """Published messages as (topic, record), held until `delay` has passed if given."""
    not_before = _not_before(delay) if delay else None
    return [(m.topic, to_record(m, not_before_ms=not_before)) for m in messages]


def retry_record(message: Message, delay: float) -> dict[str, Any]:
    """A copy for a group's retry topic, held by its consumers until `delay` has passed."""
    return to_record(message, attempt=message.attempt, not_before_ms=_not_before(delay))


def _not_before(delay: float) -> int:
    # Rounded up: a delayed record is never due before its delay, not even by a millisecond.
    return math.ceil((time.time() + delay) * 1000)


def from_record(
    record: Any, *, topic: str | None = None, delivering: bool = False
) -> tuple[Message, int | None]:
    """The message (attempt = deliveries before this one, or counting this one when
    `delivering`: built so at once, not copied) and its not-before time in ms."""
    own: dict[str, bytes] = {}
    headers: dict[str, str] = {}
    for name, value in record.headers or ():
        if name in OWN:
            own[name] = value
        else:
            headers[name] = value.decode(errors="replace") if value is not None else ""
    message_id = (
        own[ID].decode()
        if ID in own
        else str(
            uuid.uuid5(
                uuid.NAMESPACE_URL, f"kafka:{record.topic}/{record.partition}/{record.offset}"
            )
        )
    )
    key = record.key.decode(errors="replace") if record.key is not None else None
    content_type = own[CONTENT_TYPE].decode() if CONTENT_TYPE in own else codec.OCTET_STREAM
    message = Message(
        topic=topic or record.topic,
        body=record.value if record.value is not None else b"",
        id=message_id,
        key=key,
        headers=headers,
        content_type=content_type,
        timestamp=record.timestamp / 1000,
        attempt=int(own.get(ATTEMPT, b"0")) + int(delivering),
    )
    not_before = int(own[NOT_BEFORE]) if NOT_BEFORE in own else None
    return message, not_before
