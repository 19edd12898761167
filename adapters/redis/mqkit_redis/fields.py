"""Messages as Redis Stream fields, readable by redis-cli and by other clients.

The body is the field `body`, unchanged. mqkit's metadata is one field, `mqkit`: id,
content type, creation time and attempt (deliveries before this copy was written), separated
by newlines, since every field costs time to write and to parse on both ends. The key, when
there is one, is `mqkit-key`; every other field is a header. An entry written by another
client (`XADD orders * body hello`) is read with an id derived from the entry and defaults;
one without a `body` field gets its fields as a JSON object.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

from mqkit import codec, wire
from mqkit.errors import ConfigurationError
from mqkit.message import Message

BODY = b"body"
META = b"mqkit"
KEY = wire.KEY.encode()
OWN = {BODY, META, KEY}


def meta(message: Message, attempt: int) -> bytes:
    return f"{message.id}\n{message.content_type}\n{message.timestamp!r}\n{attempt}".encode()


def to_fields(message: Message, *, attempt: int = 0) -> dict[bytes, bytes]:
    fields = {BODY: message.body, META: meta(message, attempt)}
    if message.key is not None:
        fields[KEY] = message.key.encode()
    for name, value in message.headers.items():
        raw = name.encode()
        if raw in OWN:
            raise ConfigurationError(f"header name {name!r} is reserved on Redis")
        fields[raw] = value.encode()
    return fields


def with_attempt(fields: Mapping[bytes, bytes], attempt: int) -> dict[bytes, bytes]:
    """The same entry for a copy whose next delivery is attempt + 1."""
    out = dict(fields)
    if META in out:
        head = out[META].rsplit(b"\n", 1)[0]
        out[META] = head + b"\n" + str(attempt).encode()
    else:
        out[META] = f"{uuid.uuid4()}\n{codec.OCTET_STREAM}\n0\n{attempt}".encode()
    return out


def from_fields(
    topic: str, entry_id: bytes, fields: Mapping[bytes, bytes], delivered: int = 0
) -> Message:
    """The message in an entry, on its `delivered`-th delivery from that entry."""
    raw_meta = fields.get(META)
    if raw_meta is not None:
        message_id, content_type, ts, attempt = raw_meta.decode().split("\n")
        timestamp = float(ts)
    else:  # another client's entry: an id stable across redeliveries, defaults for the rest
        message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"redis:{topic}/{entry_id.decode()}"))
        content_type, attempt = codec.OCTET_STREAM, "0"
        timestamp = int(entry_id.split(b"-", 1)[0]) / 1000
    if BODY in fields:
        body = fields[BODY]
        headers = {
            k.decode(errors="replace"): v.decode(errors="replace")
            for k, v in fields.items()
            if k not in OWN
        }
    else:
        body = json.dumps(
            {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        ).encode()
        content_type, headers = codec.JSON, {}
    key = fields.get(KEY)
    return Message(
        topic=topic,
        body=body,
        id=message_id,
        key=key.decode() if key is not None else None,
        headers=headers,
        content_type=content_type,
        timestamp=timestamp,
        attempt=int(attempt) + delivered,
    )
