"""Idempotent consumers: handle each message id at most once per consumer group.

    from mqkit.idempotency import idempotent, RedisStore

    @app.subscriber("orders", group="billing", middleware=[idempotent(RedisStore(url))])
    async def bill(order: Order) -> None: ...

Brokers deliver at least once, so a handler sees a message again after a crash, a lost ack
or a replay. `idempotent(store)` claims the id before the handler runs and marks it done
after; a redelivery of a done id is acked without running the handler. A crash between the
handler's effects and the mark can still repeat the effects; to rule that out, write the
effects and the mark in one transaction with `SqlStore.transactional()`.
"""

from mqkit.idempotency.memory import MemoryStore
from mqkit.idempotency.middleware import idempotent
from mqkit.idempotency.sqlite import SqliteStore
from mqkit.idempotency.store import Claim, IdempotencyStore

__all__ = ["Claim", "IdempotencyStore", "MemoryStore", "SqliteStore", "idempotent"]
