"""`outbox.add(tx, ...)`: write a message in the caller's own database transaction.

    with Session(engine) as session, session.begin():
        session.add(Order(...))
        outbox.add(session, "orders", order, key=order.customer_id)

    async with AsyncSession(engine) as session, session.begin():
        session.add(Order(...))
        await outbox.add(session, "orders", order)

`tx` is what the service already holds: a SQLAlchemy Session, AsyncSession, Connection or
AsyncConnection, or a plain sqlite3 connection. The row is one INSERT in that transaction:
committed with the business data or rolled back with it. Async transactions return an
awaitable, sync ones the message itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Mapping
from typing import Any, overload

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from mqkit.broker import validate_topic
from mqkit.message import Message
from mqkit.outbox.schema import TABLE, outbox
from mqkit.sql import row_of
from mqkit.telemetry import tracing

SyncTransaction = Session | Connection | sqlite3.Connection
AsyncTransaction = AsyncSession | AsyncConnection

_INSERT = outbox.insert()  # built once: the values go as parameters
_COLUMNS = ("id", "topic", "key", "headers", "body", "content_type", "created_at")
_SQLITE3_INSERT = (
    f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)


@overload
def add(
    tx: AsyncTransaction,
    topic: str,
    payload: Any = ...,
    *,
    key: str | None = ...,
    headers: Mapping[str, str] | None = ...,
    id: str | None = ...,
    content_type: str | None = ...,
) -> Awaitable[Message]: ...


@overload
def add(
    tx: SyncTransaction,
    topic: str,
    payload: Any = ...,
    *,
    key: str | None = ...,
    headers: Mapping[str, str] | None = ...,
    id: str | None = ...,
    content_type: str | None = ...,
) -> Message: ...


def add(
    tx: SyncTransaction | AsyncTransaction,
    topic: str,
    payload: Any = b"",
    *,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
    id: str | None = None,
    content_type: str | None = None,
) -> Message | Awaitable[Message]:
    """Insert the message into the outbox within `tx`; returns it (its id is final)."""
    message = Message.create(
        validate_topic(topic), payload, key=key, headers=headers, id=id, content_type=content_type
    )
    tracer = tracing.tracer()
    if tracer is not None:  # the transaction's trace goes into the row; the relay keeps it
        from mqkit.telemetry import spans

        message = spans.created(tracer, message, {"mqkit.stored_in": "outbox"})
    row = row_of(message)
    if isinstance(tx, sqlite3.Connection):
        tx.execute(_SQLITE3_INSERT, tuple(row[c] for c in _COLUMNS))
        return message
    if isinstance(tx, AsyncSession | AsyncConnection):
        return _add_async(tx, row, message)
    if isinstance(tx, Session | Connection):
        tx.execute(_INSERT, row)
        return message
    raise TypeError(
        "outbox.add needs a SQLAlchemy Session, AsyncSession, Connection or AsyncConnection, "
        f"or a sqlite3 connection, not {type(tx).__name__}"
    )


async def _add_async(tx: AsyncTransaction, row: dict[str, Any], message: Message) -> Message:
    await tx.execute(_INSERT, row)
    return message
