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

from mqkit.errors import HalfMessageError
from mqkit.half.checker import HalfChecker
from mqkit.half.producer import HalfMessage, HalfProducer
from mqkit.half.store import HalfRecord, HalfStore, Resolution
from mqkit.half.stores import store_for

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
