"""Transactions: while one is open, what a broker sends goes into it instead of out at once.

    async with broker.transaction():
        await broker.publish("orders", order)
        await broker.publish_batch(lines)

Everything published through that broker in the block becomes visible together when the
block ends, or never if it raises (backends that claim `native_transactions`; the others
raise CapabilityError, since an emulation would promise what the broker cannot keep).
The open transaction is held in a context variable: the code in the block, and tasks it
starts, publish into it; every other task of the process publishes as usual.

Exactly-once subscriptions (Kafka) use the same mechanism for one delivery: what a handler
publishes through `ctx.publish` joins the delivery's output, committed with its offset.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar

from mqkit.errors import TransactionError
from mqkit.message import Message


class Transaction(ABC):
    """What a backend gives for one transaction: it takes sends until committed or aborted."""

    @abstractmethod
    async def send(self, messages: Sequence[Message], delay: float | None) -> None:
        """Take checked messages (see Broker.send) into the transaction."""

    async def commit(self) -> None:  # noqa: B027 (an output that is committed elsewhere)
        """Make everything sent visible at once, or raise TransactionError with none of it."""

    async def abort(self) -> None:  # noqa: B027
        """Drop everything sent: none of it is ever visible."""


# (the broker, its open transaction): a broker object is the key, since a process may
# talk to several brokers and only one of them is in the transaction.
_open: ContextVar[tuple[object, Transaction] | None] = ContextVar("mqkit_transaction", default=None)


def open_for(broker: object) -> Transaction | None:
    """The transaction `broker` sends into in this context, or None."""
    current = _open.get()
    return current[1] if current is not None and current[0] is broker else None


@contextlib.contextmanager
def joined(broker: object, transaction: Transaction) -> Iterator[None]:
    """Send through `broker` into `transaction` for the duration of the block."""
    token = _open.set((broker, transaction))
    try:
        yield
    finally:
        _open.reset(token)


@contextlib.asynccontextmanager
async def running(
    broker: object, begin: Callable[[], Awaitable[Transaction]]
) -> AsyncIterator[None]:
    """`Broker.transaction()`: begin, let the block send into it, commit; abort on any
    exception (cancellation included) and let it out."""
    if open_for(broker) is not None:
        # Kafka has no nested transactions, and joining the outer one silently would
        # commit the inner block's messages only when the outer block ends.
        raise TransactionError(f"a transaction on {broker!r} is open already here")
    transaction = await begin()
    try:
        with joined(broker, transaction):
            yield
    except BaseException:
        await transaction.abort()
        raise
    await transaction.commit()
