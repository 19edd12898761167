"""mqkit: one clean way to move messages reliably.

async with mqkit.connect("sqlite:///queue.db") as broker:
    await broker.publish("orders", {"id": 1})
    async with await broker.subscribe("orders", group="billing") as sub:
        async for delivery in sub:
            ...
            await delivery.ack()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqkit.adaptive import AdaptiveConcurrency
    from mqkit.broker import Broker, Delivery, Subscription, ack_all
    from mqkit.capabilities import Capabilities
    from mqkit.errors import (
        BrokerUnavailableError,
        CapabilityError,
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
        TransactionError,
        UnknownSchemeError,
        WebhookVerificationError,
    )
    from mqkit.lag import Lag
    from mqkit.message import Message
    from mqkit.middleware import Context
    from mqkit.registry import connect
    from mqkit.retry import BatchFailed, Reject, Retry, RetryPolicy
    from mqkit.worker import App

# Every name is imported on first use: `import mqkit` (and so every `mqkit` command, which
# imports this package first) should not pay for pydantic, asyncio and the worker before it
# needs one of them. The feature packages (`mqkit.outbox.add(...)` after `import mqkit`) are
# loaded the same way; some pull in SQLAlchemy, aiohttp or starlette.
_HOMES = {
    "AdaptiveConcurrency": "mqkit.adaptive",
    "Broker": "mqkit.broker",
    "Delivery": "mqkit.broker",
    "Subscription": "mqkit.broker",
    "ack_all": "mqkit.broker",
    "Capabilities": "mqkit.capabilities",
    **dict.fromkeys(
        [
            "BrokerUnavailableError",
            "CapabilityError",
            "ClosedError",
            "ConfigurationError",
            "DecodeError",
            "HalfMessageError",
            "InvalidTopicError",
            "MessageTooLargeError",
            "MqkitError",
            "PublishBackpressureError",
            "PublishTimeoutError",
            "RateLimitedError",
            "SsrfError",
            "TransactionError",
            "UnknownSchemeError",
            "WebhookVerificationError",
        ],
        "mqkit.errors",
    ),
    "Lag": "mqkit.lag",
    "Message": "mqkit.message",
    "Context": "mqkit.middleware",
    "connect": "mqkit.registry",
    "BatchFailed": "mqkit.retry",
    "Reject": "mqkit.retry",
    "Retry": "mqkit.retry",
    "RetryPolicy": "mqkit.retry",
    "App": "mqkit.worker",
}
_SUBPACKAGES = frozenset(
    {"dlq", "half", "idempotency", "outbox", "ratelimit", "sync", "testing", "webhooks"}
)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"mqkit.{name}")
    elif name == "__version__":
        from mqkit._version import __version__ as value
    else:
        raise AttributeError(f"module 'mqkit' has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})


__all__ = [
    "AdaptiveConcurrency",
    "App",
    "BatchFailed",
    "Broker",
    "BrokerUnavailableError",
    "Capabilities",
    "CapabilityError",
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
    "TransactionError",
    "UnknownSchemeError",
    "WebhookVerificationError",
    "__version__",
    "ack_all",
    "connect",
]
