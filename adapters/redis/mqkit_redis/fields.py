"""Messages as Redis Stream fields, readable by redis-cli and by other clients.

The body is the field `body`; mqkit's own fields are `mqkit-id`, `mqkit-key`,
`mqkit-content-type`, `mqkit-timestamp` and `mqkit-attempt` (deliveries before this copy
was written); every other field is a header. An entry written by another client
(`XADD orders * body hello`) is read with a fresh id and defaults; one without a `body`
field gets its fields as a JSON object.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping

from mqkit import codec
from mqkit.errors import ConfigurationError
from mqkit.message import Message

BODY = b"body"
ID = b"mqkit-id"
KEY = b"mqkit-key"
CONTENT_TYPE = b"mqkit-content-type"
TIMESTAMP = b"mqkit-timestamp"
ATTEMPT = b"mqkit-attempt"
OWN = {BODY, ID, KEY, CONTENT_TYPE, TIMESTAMP, ATTEMPT}


def to_fields(message: Message, *, attempt: int = 0) -> dict[bytes, bytes]:
    fields = {
        BODY: message.body,
        ID: message.id.encode(),
        CONTENT_TYPE: message.content_type.encode(),
        TIMESTAMP: repr(message.timestamp).encode(),
    }
    if message.key is not None:
        fields[KEY] = message.key.encode()
    if attempt:
        fields[ATTEMPT] = str(attempt).encode()
    for name, value in message.headers.items():
        raw = name.encode()
        if raw in OWN:
            raise ConfigurationError(f"header name {name!r} is reserved on Redis")
        fields[raw] = value.encode()
    return fields


def from_fields(topic: str, entry_id: bytes, fields: Mapping[bytes, bytes]) -> Message:
    """The message in an entry; `attempt` is left at the entry's base (see ATTEMPT)."""
    if BODY in fields:
        body = fields[BODY]
        content_type = fields.get(CONTENT_TYPE, codec.OCTET_STREAM.encode()).decode()
    else:  # written by another client without a body field
        body = json.dumps(
            {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        ).encode()
        content_type = codec.JSON
    headers = (
        {
            k.decode(errors="replace"): v.decode(errors="replace")
            for k, v in fields.items()
            if k not in OWN
        }
        if BODY in fields
        else {}
    )
    raw_id = fields.get(ID)
    # Another client's entry: an id derived from the entry, stable across redeliveries.
    message_id = (
        raw_id.decode()
        if raw_id
        else str(uuid.uuid5(uuid.NAMESPACE_URL, f"redis:{topic}/{entry_id.decode()}"))
    )
    ms = int(entry_id.split(b"-", 1)[0])
    return Message(
        topic=topic,
        body=body,
        id=message_id,
        key=fields[KEY].decode() if KEY in fields else None,
        headers=headers,
        content_type=content_type,
        timestamp=float(fields[TIMESTAMP]) if TIMESTAMP in fields else ms / 1000 or time.time(),
        attempt=int(fields.get(ATTEMPT, b"0")),
    )
