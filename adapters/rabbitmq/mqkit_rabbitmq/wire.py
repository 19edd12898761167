"""RabbitMQ's side of the wire: a message as an AMQP message and back (body, id, key and
content type in their AMQP fields; the attempt counted from mqkit's header and the broker's
redelivery count), a group's queue name, and the URL as aio-pika takes it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode

from mqkit import codec
from mqkit.message import Message
from mqkit.wire import ATTEMPT, KEY

# Set by RabbitMQ when a delay queue dead-letters a message into its target.
DEAD_LETTER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


def amqp_url(url: str, mqkit_options: Collection[str]) -> str:
    """The URL without the options mqkit reads itself (aio-pika gets the rest)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in mqkit_options]
    return urlunsplit(parts._replace(query=urlencode(query)))


def group_queue(topic: str, group: str) -> str:
    return f"{topic}:{group}"


def to_amqp(message: Message, *, attempt: int = 0) -> aio_pika.Message:
    headers: dict[str, Any] = dict(message.headers)
    if message.key is not None:
        headers[KEY] = message.key
    if attempt:
        headers[ATTEMPT] = attempt
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        message_id=message.id,
        timestamp=datetime.fromtimestamp(message.timestamp, UTC),
        delivery_mode=DeliveryMode.PERSISTENT,
    )


def from_amqp(topic: str, incoming: AbstractIncomingMessage) -> Message:
    """The message, its attempt counted from mqkit's header and the broker's redelivery."""
    raw = dict(incoming.headers or {})
    base = int(str(raw.pop(ATTEMPT, 0) or 0))
    key = raw.pop(KEY, None)
    delivery_count = raw.pop("x-delivery-count", None)  # quorum queues count for us
    for name in [n for n in raw if n.startswith(DEAD_LETTER_HEADERS)]:
        del raw[name]  # set by RabbitMQ when a delay queue dead-letters the message
    headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in raw.items()}
    if delivery_count is not None:
        seen = int(str(delivery_count)) + 1
    else:
        seen = 2 if incoming.redelivered else 1
    timestamp = (
        incoming.timestamp.timestamp() if incoming.timestamp else datetime.now(UTC).timestamp()
    )
    return Message(
        topic=topic,
        body=incoming.body,
        id=incoming.message_id or f"amqp-{incoming.delivery_tag}-{timestamp}",
        key=key.decode() if isinstance(key, bytes) else (str(key) if key is not None else None),
        headers=headers,
        content_type=incoming.content_type or codec.OCTET_STREAM,
        timestamp=timestamp,
        attempt=base + seen,
    )
