"""mqkit: one clean way to move messages reliably.

async with mqkit.connect("sqlite:///queue.db") as broker:
    await broker.publish("orders", {"id": 1})
    async with await broker.subscribe("orders", group="billing") as sub:
        async for delivery in sub:
            ...
            await delivery.ack()
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from mqkit.adaptive import AdaptiveConcurrency
from mqkit.broker import Broker, Delivery, Subscription
from mqkit.capabilities import Capabilities
from mqkit.errors import (
    BrokerUnavailableError,
    ClosedError,
    ConfigurationError,
    DecodeError,
    HalfMessageError,
    InvalidTopicError,
    MessageTooLargeError,
    MqkitError,
    PublishBackpressureError,
    PublishTimeoutError,
    RateLimitedError,
    SsrfError,
    UnknownSchemeError,
    WebhookVerificationError,
)
from mqkit.lag import Lag
from mqkit.message import Message
from mqkit.middleware import Context
from mqkit.registry import connect
from mqkit.retry import Reject, Retry, RetryPolicy
from mqkit.worker import App

try:
    __version__ = version("mqkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# The feature packages, imported on first use (`mqkit.outbox.add(...)` after `import mqkit`):
# some pull in SQLAlchemy, aiohttp or starlette, which `import mqkit` alone should not pay.
_SUBPACKAGES = frozenset(
    {"dlq", "half", "idempotency", "outbox", "ratelimit", "sync", "testing", "webhooks"}
)


def __getattr__(name: str) -> ModuleType:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"mqkit.{name}")
    raise AttributeError(f"module 'mqkit' has no attribute {name!r}")


__all__ = [
    "AdaptiveConcurrency",
    "App",
    "Broker",
    "BrokerUnavailableError",
    "Capabilities",
    "ClosedError",
    "ConfigurationError",
    "Context",
    "DecodeError",
    "Delivery",
    "HalfMessageError",
    "InvalidTopicError",
    "Lag",
    "Message",
    "MessageTooLargeError",
    "MqkitError",
    "PublishBackpressureError",
    "PublishTimeoutError",
    "RateLimitedError",
    "Reject",
    "Retry",
    "RetryPolicy",
    "SsrfError",
    "Subscription",
    "UnknownSchemeError",
    "WebhookVerificationError",
    "__version__",
    "connect",
]
