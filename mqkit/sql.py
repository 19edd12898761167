"""Database URLs, engines and the row form of a message, for mqkit's SQL features
(idempotency, outbox, half messages).

Plain URLs (`postgresql://...`, `sqlite:///path`) get the async drivers mqkit installs with
the `sql` extra: psycopg 3 and aiosqlite. URLs naming a driver are used as given.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mqkit.errors import MqkitError
from mqkit.message import Message
from mqkit.urls import mask

SUPPORTED = ("postgresql", "sqlite")


def async_url(url: str) -> str:
    """Plain database URLs get the async driver mqkit installs (psycopg 3, aiosqlite)."""
    for plain, driver in (
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def engine_for(url: str, *, wal: bool = False) -> AsyncEngine:
    """An engine for a PostgreSQL or SQLite URL; anything else is a clear error.

    `wal` puts a SQLite file in write-ahead-log mode, where readers never wait for the
    writer. Only for files mqkit owns: the mode stays with the file, and a team's own
    database is theirs to configure."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise MqkitError(f"not a database URL: {mask(url)}") from None
    if backend not in SUPPORTED and backend != "postgres":
        raise MqkitError(f"mqkit supports PostgreSQL and SQLite databases, not {mask(url)}")
    try:
        return _create(async_url(url), wal=wal)
    except Exception as exc:  # a missing driver, a bad option
        raise MqkitError(f"cannot use database {mask(url)}: {exc}") from None


def missing_sqlite_file(url: str) -> bool:
    """Whether `url` names a SQLite file that does not exist. Opening it would create an
    empty database, which a command that only reads or relays must not leave behind."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not os.path.exists(parsed.database)


def check_dialect(engine: AsyncEngine) -> None:
    if engine.dialect.name not in SUPPORTED:
        raise MqkitError(f"mqkit supports PostgreSQL and SQLite, not {engine.dialect.name}")


def _create(url: str, *, wal: bool) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_pre_ping=True)
    # Writers queue on the file lock instead of failing at once.
    engine = create_async_engine(url, connect_args={"timeout": 30})
    if wal:

        @event.listens_for(engine.sync_engine, "connect")
        def _wal(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


class SqlTables:
    """What a SQL-backed store shares: its database, given as a URL (the store owns the
    engine and disposes of it on close) or as the caller's engine, and its tables, created
    on first use (teams that migrate with Alembic can take `metadata` instead)."""

    def __init__(
        self, metadata: MetaData, url: str | None = None, *, engine: AsyncEngine | None = None
    ) -> None:
        if (url is None) == (engine is None):
            raise ValueError("give either a database URL or an engine")
        self._owns = engine is None
        self.engine = engine or engine_for(url or "")
        check_dialect(self.engine)
        self._metadata = metadata
        self._created = False
        self._creating = asyncio.Lock()

    async def create(self) -> None:
        async with self._creating:
            if not self._created:
                async with self.engine.begin() as conn:
                    await conn.run_sync(self._metadata.create_all)
                self._created = True

    async def close(self) -> None:
        if self._owns:
            await self.engine.dispose()


def row_of(message: Message) -> dict[str, Any]:
    """The columns a stored message is written as (outbox and half-message tables)."""
    return {
        "id": message.id,
        "topic": message.topic,
        "key": message.key,
        "headers": json.dumps(dict(message.headers), separators=(",", ":")),
        "body": message.body,
        "content_type": message.content_type,
        "created_at": message.timestamp,
    }


def message_of(row: Any) -> Message:
    """The message a row holds, as the relay publishes it: same id, key, headers, time."""
    return Message(
        topic=row.topic,
        body=bytes(row.body),
        id=row.id,
        key=row.key,
        headers=json.loads(row.headers) if row.headers != "{}" else {},
        content_type=row.content_type,
        timestamp=row.created_at,
    )
