"""What mqkit puts on the wire beside a message's body: every header it owns, the DLQ topic
and group names, and the dead-letter copy. One place, so that the core, the DLQ tools and
every adapter agree (docs/design.md lists them with their meaning).

Headers mqkit owns carry the prefix `mqkit-`; everything else passes through untouched.
"""

from __future__ import annotations

import time

from mqkit.message import Message

# -- set by adapters whose broker has no field of its own for it --------------------------------
ID = "mqkit-id"
CONTENT_TYPE = "mqkit-content-type"
KEY = "mqkit-key"
ATTEMPT = "mqkit-attempt"  # the attempt a redelivery is, where the adapter counts them
NOT_BEFORE = "mqkit-not-before"  # epoch ms before which a delayed record is held (Kafka)

# -- dead letters ---------------------------------------------------------------------------------
DLQ_SUFFIX = ".dlq"
DLQ_GROUP = "mqkit-dlq"  # the consumer group mqkit's DLQ tools read `<topic>.dlq` with
ORIGINAL_TOPIC = "mqkit-original-topic"
GROUP = "mqkit-group"
ATTEMPTS = "mqkit-attempts"
ERROR = "mqkit-error"
ERROR_TYPE = "mqkit-error-type"
# When a message first failed; carried across redeliveries by backends that copy on nack.
FIRST_FAILED_AT = "mqkit-first-failed-at"
LAST_FAILED_AT = "mqkit-last-failed-at"
ORIGINAL_KEY = "mqkit-original-key"
REPLAY_GROUP = "mqkit-replay-group"  # a replay is for this group; others ack it unhandled
DEAD_LETTER_HEADERS = (
    ORIGINAL_TOPIC,
    ORIGINAL_KEY,
    GROUP,
    ATTEMPTS,
    ERROR,
    ERROR_TYPE,
    FIRST_FAILED_AT,
    LAST_FAILED_AT,
)
MAX_ERROR = 2000  # characters of the reason kept in ERROR

# -- features -------------------------------------------------------------------------------------
BODY_IN_OUTBOX = "mqkit-body-in-outbox"  # a row too large for the broker: its size
WEBHOOK_SOURCE = "mqkit-webhook-source"  # the receiver's source a delivery came from
WEBHOOK_ENDPOINT = "mqkit-webhook-endpoint"  # on a dispatcher retry: which endpoint,
WEBHOOK_ATTEMPT = "mqkit-webhook-attempt"  # which attempt comes next,
WEBHOOK_TOPIC = "mqkit-webhook-topic"  # and the original topic


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def dead_letter_copy(
    message: Message,
    reason: str | BaseException,
    *,
    group: str | None,
    first_failed_at: str | None = None,
) -> Message:
    """The copy of `message` that goes to `<topic>.dlq`: same id, body and headers, plus
    headers saying where it came from, after how many attempts, and why (see mqkit.dlq).
    Its key moves to the header `mqkit-original-key`: dead letters are not ordered, so one
    held by a reader must not hold back others with the same key."""
    if isinstance(reason, BaseException):
        error_type, error = type(reason).__name__, f"{type(reason).__name__}: {reason}"
    else:
        error_type, error = "", reason
    now = f"{time.time():.3f}"
    headers = dict(message.headers)
    headers.update(
        {
            ORIGINAL_TOPIC: message.topic,
            GROUP: group or "",
            ATTEMPTS: str(message.attempt),
            ERROR: error[:MAX_ERROR],
            ERROR_TYPE: error_type,
            FIRST_FAILED_AT: first_failed_at or now,
            LAST_FAILED_AT: now,
        }
    )
    if message.key is not None:
        headers[ORIGINAL_KEY] = message.key
    return message.with_changes(
        topic=dlq_topic(message.topic), key=None, headers=headers, attempt=0
    )
