"""Every error mqkit raises on purpose derives from MqkitError.

The CLI turns these into one line on stderr and exit code 2, so their messages are written
for a person: they say what went wrong and, where it helps, what to do about it.
"""

from __future__ import annotations


class MqkitError(Exception):
    """Base class of all mqkit errors."""


class ConfigurationError(MqkitError):
    """A URL, option or argument that mqkit cannot use."""


class UnknownSchemeError(ConfigurationError):
    """No installed backend handles the URL's scheme."""


class BrokerUnavailableError(MqkitError):
    """The broker could not be reached; the message names the (masked) URL."""


class ClosedError(MqkitError):
    """The broker or subscription was already closed."""


class MessageTooLargeError(MqkitError):
    """A message is larger than the broker's configured limit; raised before sending."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class InvalidTopicError(ConfigurationError):
    """A topic name that some backend could not represent."""


class DecodeError(MqkitError):
    """A message body that cannot be decoded into what the handler asked for (a poison message)."""


class PublishTimeoutError(BrokerUnavailableError):
    """A publish was not confirmed within its timeout.

    Its outcome is unknown, not negative: a client may still deliver what it had queued once
    the broker is back (aiokafka does). Publish the same message again (same id) and let
    consumers deduplicate (mqkit.idempotency); never assume it was not sent.
    """
