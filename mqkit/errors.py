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


class PublishBackpressureError(MqkitError):
    """Too many publishes in flight for longer than the timeout."""


class RateLimitedError(MqkitError):
    """Over the limit, and waiting was not allowed (or would pass the deadline)."""

    def __init__(self, key: str, retry_after: float) -> None:
        name = repr(key) if key else "the default key"
        super().__init__(f"rate limit for {name}: retry in {retry_after:.3f}s")
        self.key = key
        self.retry_after = retry_after


class HalfMessageError(MqkitError):
    """A commit or rollback came too late: a checker had already resolved the message
    the other way (or it is unknown to the store)."""


class WebhookVerificationError(MqkitError):
    """The delivery is not authentic or not fresh; the message says which check failed."""


class SsrfError(MqkitError):
    """The endpoint's address is one the guard refuses; the message says which and why."""


class CapabilityError(ConfigurationError):
    """Asked a backend for something it does not claim; the message names the capability
    flag (see mqkit.capabilities), so nothing is emulated behind the user's back."""

    def __init__(self, system: str, flag: str, what: str) -> None:
        super().__init__(f"{what} needs {flag}, which {system} does not claim")
        self.flag = flag


class TransactionError(MqkitError):
    """A transaction could not commit and was aborted: nothing of it is visible. The message
    says why (another producer took over its transactional id, for one)."""
