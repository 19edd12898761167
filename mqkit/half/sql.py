"""Half messages in PostgreSQL or SQLite (through SQLAlchemy): table `mqkit_half`.

Every state change is one UPDATE with its condition in the WHERE clause, so it either
happens or reports False. Checkers claim due messages with `FOR UPDATE SKIP LOCKED` on
PostgreSQL; SQLite runs one writer at a time, which makes the same claim exclusive.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import (
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
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from mqkit.half.store import (
    ACTIVE,
    COMMITTED,
    COMMITTING,
    PREPARED,
    HalfRecord,
)
from mqkit.message import Message
from mqkit.sql import SqlTables, message_of, row_of

TABLE = "mqkit_half"
metadata = MetaData()
half = Table(
    TABLE,
    metadata,
    Column("id", String(64), primary_key=True),
    Column("grp", String(255), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("key", Text),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("holder", String(64)),
    Column("check_at", Float, nullable=False),
    Column("checks", Integer, nullable=False),
    Column("resolved_at", Float),
    Column("reason", Text),
    Index(
        "mqkit_half_due",
        "grp",
        "check_at",
        postgresql_where=text("state IN ('prepared', 'committing')"),
        sqlite_where=text("state IN ('prepared', 'committing')"),
    ),
)

_CLAIM = f"""UPDATE {TABLE}
SET holder = :me, check_at = :until,
    checks = checks + CASE WHEN state = 'prepared' THEN 1 ELSE 0 END
WHERE id IN (
  SELECT id FROM {TABLE}
  WHERE grp = :grp AND state IN ('prepared', 'committing') AND check_at <= :now
  ORDER BY check_at LIMIT :n {{lock}})
RETURNING *"""


class SqlHalfStore(SqlTables):
    """`SqlHalfStore("postgresql://...")`, `SqlHalfStore("sqlite:///half.db")`, or an engine.
    The table is created on first use (or take `half` from this module for migrations)."""

    def __init__(self, url: str | None = None, *, engine: AsyncEngine | None = None) -> None:
        super().__init__(metadata, url, engine=engine)
        lock = "FOR UPDATE SKIP LOCKED" if self.engine.dialect.name == "postgresql" else ""
        self._claim = text(_CLAIM.format(lock=lock))

    async def prepare(self, group: str, message: Message, check_at: float) -> None:
        await self.create()
        values = {**row_of(message), "grp": group, "state": PREPARED}
        async with self.engine.begin() as conn:
            await conn.execute(half.insert().values(checks=0, check_at=check_at, **values))

    async def begin_commit(
        self, id: str, holder: str, lease: float, *, held_by: str | None = None
    ) -> Message | None:
        await self.create()
        where = [half.c.id == id, half.c.state == PREPARED]
        if held_by is not None:
            where.append(half.c.holder == held_by)
        statement = (
            update(half)
            .where(*where)
            .values(state=COMMITTING, holder=holder, check_at=time.time() + lease)
            .returning(*half.c)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(statement)).first()
        return message_of(row) if row else None

    async def finish_commit(self, id: str, holder: str) -> bool:
        statement = (
            update(half)
            .where(half.c.id == id, half.c.state == COMMITTING, half.c.holder == holder)
            .values(state=COMMITTED, holder=None, resolved_at=time.time())
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(statement)).rowcount == 1

    async def resolve(
        self, id: str, state: str, *, held_by: str | None = None, reason: str | None = None
    ) -> bool:
        await self.create()
        where = [half.c.id == id, half.c.state == PREPARED]
        if held_by is not None:
            where.append(half.c.holder == held_by)
        statement = (
            update(half)
            .where(*where)
            .values(state=state, holder=None, resolved_at=time.time(), reason=reason)
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(statement)).rowcount == 1

    async def claim_due(
        self, group: str, holder: str, now: float, interval: float, limit: int
    ) -> list[HalfRecord]:
        await self.create()
        params = {"me": holder, "until": now + interval, "grp": group, "now": now, "n": limit}
        async with self.engine.begin() as conn:
            rows = (await conn.execute(self._claim, params)).all()
        return sorted((_record(r) for r in rows), key=lambda r: r.message.timestamp)

    async def get(self, id: str) -> HalfRecord | None:
        await self.create()
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(half).where(half.c.id == id))).first()
        return _record(row) if row else None

    async def records(
        self, group: str | None = None, *, resolved: bool = False, limit: int = 1000
    ) -> list[HalfRecord]:
        await self.create()
        query = select(half).order_by(half.c.created_at).limit(limit)
        if group is not None:
            query = query.where(half.c.grp == group)
        if not resolved:
            query = query.where(half.c.state.in_(ACTIVE))
        async with self.engine.connect() as conn:
            return [_record(r) for r in (await conn.execute(query)).all()]

    async def purge_resolved(self, older_than: float) -> int:
        await self.create()
        statement = delete(half).where(half.c.state.not_in(ACTIVE), half.c.resolved_at < older_than)
        async with self.engine.begin() as conn:
            return int((await conn.execute(statement)).rowcount)


def _record(row: Any) -> HalfRecord:
    return HalfRecord(
        message=message_of(row),
        group=row.grp,
        state=row.state,
        checks=row.checks,
        check_at=row.check_at,
        holder=row.holder,
        resolved_at=row.resolved_at,
        reason=row.reason,
    )
