"""An idempotency store in PostgreSQL or SQLite through SQLAlchemy, with exactly-once effects.

    store = SqlStore("postgresql://app@db/app")

    @app.subscriber("orders", group="billing", middleware=[store.transactional()])
    async def bill(order: Order, ctx: Context) -> None:
        conn = store.connection(ctx)          # the transaction the mark is written in
        await conn.execute(insert(invoices).values(...))

With `transactional()` the "processed" mark is inserted in the same transaction as the
handler's writes and committed with them: either both happen or neither, so a crash at any
point cannot repeat the effects. A concurrent duplicate waits on the row lock of the first
and then sees the mark. `idempotent(store)` also accepts this store for handlers whose
effects live elsewhere.
"""

from __future__ import annotations

import time

from sqlalchemy import Column, Float, MetaData, String, Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mqkit.idempotency.middleware import DAY
from mqkit.idempotency.store import Claim
from mqkit.middleware import CallNext, Context, Middleware
from mqkit.sql import SqlTables

_DONE = "done"  # tokens are 32 hex digits, so never this
CONNECTION = "mqkit.sql.connection"

metadata = MetaData()
processed = Table(
    "mqkit_processed",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)


class SqlStore(SqlTables):
    """`SqlStore(url)` or `SqlStore(engine=...)`; `create()` makes the table if missing
    (teams that migrate with Alembic can take `processed` from this module instead)."""

    def __init__(self, url: str | None = None, *, engine: AsyncEngine | None = None) -> None:
        super().__init__(metadata, url, engine=engine)

    # -- exactly-once effects ------------------------------------------------------------------

    def transactional(self, *, ttl: float = 30 * DAY) -> Middleware:
        """Middleware: open a transaction, insert the mark, run the handler in it, commit."""

        async def middleware(ctx: Context, call_next: CallNext) -> None:
            await self.create()
            async with self.engine.begin() as conn:
                key = f"{ctx.group}:{ctx.message.id}"
                if not await self._take(conn, key, _DONE, ttl):
                    ctx.outcome = "duplicate"
                    return
                ctx.state[CONNECTION] = conn
                try:
                    await call_next(ctx)
                finally:
                    del ctx.state[CONNECTION]

        return middleware

    @staticmethod
    def connection(ctx: Context) -> AsyncConnection:
        """The transaction `transactional()` opened for this message."""
        try:
            conn = ctx.state[CONNECTION]
        except KeyError:
            raise RuntimeError(
                "no transaction: add SqlStore.transactional() as middleware"
            ) from None
        assert isinstance(conn, AsyncConnection)
        return conn

    # -- the IdempotencyStore protocol ---------------------------------------------------------

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        await self.create()
        async with self.engine.begin() as conn:
            if await self._take(conn, key, token, lease):
                return Claim.NEW
            holder = await conn.scalar(select(processed.c.holder).where(processed.c.key == key))
        return Claim.DONE if holder == _DONE else Claim.BUSY

    async def complete(self, key: str, token: str, ttl: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(processed)
                .where(processed.c.key == key)
                .values(holder=_DONE, expires_at=time.time() + ttl)
            )

    async def release(self, key: str, token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(processed).where(processed.c.key == key, processed.c.holder == token)
            )

    async def purge_expired(self) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(processed).where(processed.c.expires_at <= time.time())
            )
        return int(result.rowcount)

    async def _take(self, conn: AsyncConnection, key: str, holder: str, ttl: float) -> bool:
        """Insert the key, or take it over if its mark expired; False if someone holds it."""
        now = time.time()
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(processed).values(key=key, holder=holder, expires_at=now + ttl)
        statement = insert.on_conflict_do_update(
            index_elements=[processed.c.key],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=processed.c.expires_at <= now,
        ).returning(processed.c.key)
        return (await conn.execute(statement)).first() is not None
