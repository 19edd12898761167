"""mqkit: one clean way to move messages reliably.

async with mqkit.connect("sqlite:///queue.db") as broker:
    await broker.publish("orders", {"id": 1})
    async with await broker.subscribe("orders", group="billing") as sub:
        async for delivery in sub:
            ...
            await delivery.ack()
"""

from importlib.metadata import PackageNotFoundError, version

from mqkit.adaptive import AdaptiveConcurrency
from mqkit.app import App
from mqkit.broker import Broker, Delivery, Subscription
from mqkit.capabilities import Capabilities
from mqkit.errors import (
    BrokerUnavailableError,
    ClosedError,
    ConfigurationError,
    DecodeError,
    InvalidTopicError,
    MessageTooLargeError,
    MqkitError,
    UnknownSchemeError,
)
from mqkit.message import Message
from mqkit.middleware import Context
from mqkit.registry import connect
from mqkit.retry import Reject, Retry, RetryPolicy

try:
    __version__ = version("mqkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

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
    "InvalidTopicError",
    "Message",
    "MessageTooLargeError",
    "MqkitError",
    "Reject",
    "Retry",
    "RetryPolicy",
    "Subscription",
    "UnknownSchemeError",
    "__version__",
    "connect",
]
