"""Half messages (RocketMQ-style transactional messages) over any broker.

    store = half.store_for("postgresql://app@db/app")      # or sqlite:///..., redis://...
    producer = half.HalfProducer(broker, store, group="orders-service")
    async with producer.transaction("orders", order) as h:
        await save(order)                                  # commit on success, rollback on error

    checker = half.HalfChecker(broker, store, check, group="orders-service")
    await checker.run()                                    # or `mqkit half checker`

Prepared messages live in the store (SQL needs the `sql` extra, Redis the `redis` extra),
invisible to consumers until committed. See README "Outbox or half messages".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqkit.errors import HalfMessageError
    from mqkit.half.checker import HalfChecker
    from mqkit.half.producer import HalfMessage, HalfProducer
    from mqkit.half.store import HalfRecord, HalfStore, Resolution
    from mqkit.half.stores import store_for

# Imported on first use, as mqkit's own names are: `mqkit half --help` reads only
# mqkit.half.defaults.
_HOMES = {
    "HalfMessageError": "mqkit.errors",
    "HalfChecker": "mqkit.half.checker",
    "HalfMessage": "mqkit.half.producer",
    "HalfProducer": "mqkit.half.producer",
    "HalfRecord": "mqkit.half.store",
    "HalfStore": "mqkit.half.store",
    "Resolution": "mqkit.half.store",
    "store_for": "mqkit.half.stores",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'mqkit.half' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "HalfChecker",
    "HalfMessage",
    "HalfMessageError",
    "HalfProducer",
    "HalfRecord",
    "HalfStore",
    "Resolution",
    "store_for",
]
