"""The attempt log: every delivery attempt, and the messages attempted, for `webhook attempts`
and `webhook replay`.

Each attempt is a row in `mqkit_webhook_attempts` (status, latency, error, and an excerpt of
the response kept server-side only: it never goes back to anyone). Each message is kept once
in `mqkit_webhook_messages` so that a replay can send it again after the broker dropped it.
At thousands of deliveries a second a row-per-insert would cost more than the delivery, so
the dispatcher's rows are buffered and written in batches every `flush_interval`; a crash
can lose the last fraction of a second of log, never a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from mqkit.message import Message
from mqkit.sql import SqlTables, message_of, row_of

EXCERPT = 1024

log = logging.getLogger("mqkit.webhooks")

metadata = MetaData()
attempts_table = Table(
    "mqkit_webhook_attempts",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(64), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("status", Integer),
    Column("ok", Boolean, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("outcome", String(16), nullable=False),  # delivered, retrying, failed, disabled
    Column("error", Text),
    Column("response", Text),
    Index("mqkit_webhook_attempts_endpoint", "endpoint_id", "at"),
)
messages_table = Table(
    "mqkit_webhook_messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("topic", String(249), nullable=False),
    Column("key", Text),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("kept_at", Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Attempt:
    endpoint_id: str
    message_id: str
    topic: str
    attempt: int
    at: float
    status: int | None
    ok: bool
    latency_ms: float
    outcome: str
    error: str | None = None
    response: str | None = None

    def row(self) -> dict[str, Any]:
        # A shallow copy of the fields: dataclasses.asdict deep-copies each one, a tenth of a
        # millisecond per delivery that the dispatcher's profile showed.
        return {name: getattr(self, name) for name in self.__slots__}


class AttemptLog(SqlTables):
    """Writes attempts and messages in batches; reads them back for the CLI and replays."""

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: AsyncEngine | None = None,
        flush_interval: float = 0.2,
        max_buffer: int = 2000,
        max_kept: int = 200_000,
    ) -> None:
        super().__init__(metadata, url, engine=engine)
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.max_kept = max_kept
        self._attempts: list[dict[str, Any]] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._kick = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()

    # -- writing -----------------------------------------------------------------------------

    def record(self, attempt: Attempt, message: Message | None = None) -> None:
        """Buffer an attempt (and the message, the first time); written within the interval."""
        self._attempts.append(attempt.row())
        if message is not None and message.id not in self._messages:
            row = row_of(message)
            row["kept_at"] = attempt.at
            self._messages[message.id] = row
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="mqkit-attempt-log")
        if len(self._attempts) >= self.max_buffer:
            self._kick.set()

    async def flush(self) -> None:
        async with self._flushing:
            attempts, self._attempts = self._attempts, []
            messages, self._messages = list(self._messages.values()), {}
            if not attempts and not messages:
                return
            try:
                await self._write(attempts, messages)
            except BaseException:
                self._keep_for_next_flush(attempts, messages)
                raise

    async def _write(self, attempts: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
        await self.create()
        async with self.engine.begin() as conn:
            if messages:
                insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
                await conn.execute(
                    insert(messages_table).on_conflict_do_nothing(index_elements=["id"]),
                    messages,
                )
            if attempts:
                await conn.execute(attempts_table.insert(), attempts)

    def _keep_for_next_flush(
        self, attempts: list[dict[str, Any]], messages: list[dict[str, Any]]
    ) -> None:
        """A failed write goes back ahead of what came since. While the database stays away
        the buffer is capped, oldest attempts dropped first: deliveries must go on."""
        self._attempts[:0] = attempts
        self._messages = {**{row["id"]: row for row in messages}, **self._messages}
        excess = len(self._attempts) - self.max_kept
        if excess > 0:
            del self._attempts[:excess]
            log.warning("webhook attempt log unwritable: dropped the %d oldest attempts", excess)
        for message_id in list(self._messages)[: max(0, len(self._messages) - self.max_kept)]:
            del self._messages[message_id]

    async def _write_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.flush_interval)
            self._kick.clear()
            try:
                # Shielded: close() cancels this task, and a write cancelled midway can
                # leave its SQLite connection holding the lock (see Dispatcher.run). The
                # write goes on; close()'s own flush waits for it.
                await asyncio.shield(self.flush())
            except Exception as exc:  # the log must not stop deliveries; the next flush retries
                log.warning("cannot write the webhook attempt log: %s", exc)
                await asyncio.sleep(self.flush_interval)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self.flush()
        await super().close()

    # -- reading -----------------------------------------------------------------------------

    async def attempts(
        self,
        endpoint_id: str,
        *,
        since: float = 0.0,
        message_id: str | None = None,
        limit: int = 100,
    ) -> list[Attempt]:
        """The newest attempts to an endpoint first."""
        await self.create()
        query = select(attempts_table).where(
            attempts_table.c.endpoint_id == endpoint_id, attempts_table.c.at >= since
        )
        if message_id is not None:
            query = query.where(attempts_table.c.message_id == message_id)
        query = query.order_by(attempts_table.c.at.desc(), attempts_table.c.seq.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [_attempt(r) for r in rows]

    async def to_replay(
        self, endpoint_id: str, *, since: float, include_delivered: bool = False
    ) -> list[Message]:
        """The messages attempted to the endpoint since `since` that it never got (or all of
        them, with include_delivered), oldest first, as they were first published."""
        await self.create()
        a = attempts_table.c
        delivered = func.max(a.ok.cast(Integer))
        ids = (
            select(a.message_id, func.min(a.at).label("first"))
            .where(a.endpoint_id == endpoint_id, a.at >= since)
            .group_by(a.message_id)
        )
        if not include_delivered:
            ids = ids.having(delivered == 0)
        picked = ids.subquery()
        query = (
            select(messages_table)
            .join(picked, messages_table.c.id == picked.c.message_id)
            .order_by(picked.c.first)
        )
        async with self.engine.connect() as conn:
            return [message_of(row) for row in await conn.execute(query)]

    async def purge(self, older_than: float) -> int:
        """Drop attempts and kept messages older than `older_than` (epoch seconds)."""
        await self.create()
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(attempts_table).where(attempts_table.c.at < older_than)
            )
            await conn.execute(delete(messages_table).where(messages_table.c.kept_at < older_than))
        return int(gone.rowcount or 0)


def _attempt(row: Any) -> Attempt:
    data = dict(row._mapping)
    data.pop("seq")
    return Attempt(**data)


def excerpt(body: bytes) -> str:
    """The start of a response body, as text, for the log."""
    return body[:EXCERPT].decode("utf-8", "replace")
