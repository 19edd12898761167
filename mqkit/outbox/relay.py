"""The relay: moves outbox rows to the broker, at least once, in per-key order.

    async with mqkit.connect(broker_url) as broker:
        relay = OutboxRelay("postgresql://app@db/app", broker)
        await relay.run(stop)           # or `mqkit outbox relay --db ... --url ...`

Each round claims a batch of the oldest unsent rows, publishes it and waits for the broker's
confirms, then deletes the rows (or marks them sent when `retention` keeps them). A crash
between the confirm and the commit of the mark publishes those rows again, with the same
ids; consumers with the idempotency middleware see one effect.

PostgreSQL: batches are claimed with `FOR UPDATE SKIP LOCKED` (and marked in the same
statement) inside a transaction that commits once the broker confirmed them, so relays side
by side never claim the same row, and a relay that dies releases its rows the moment its
connection drops. A relay first takes a transaction-scoped advisory lock on each key it will
send and claims rows of those keys only; other relays skip locked keys, so one key's
messages go out in order however many relays run. The next batch is claimed while the
broker confirms the last one. Relays sleep on LISTEN (the table's trigger NOTIFYs on
insert) and poll as a fallback.

A row carries the trace context of the transaction that added it (outbox.add writes a
`create` span's into its headers); the relay's `send` span links to it and the message keeps
it, so its consumers continue the transaction's trace.

SQLite has no row locks: a batch is claimed by a lease (`claimed_by`, `claimed_until`) in
one short write, so business transactions are never blocked while the broker is slow; a key
whose earlier row is leased by another relay is skipped. A dead relay's rows are taken over
when its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import delete, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mqkit.broker import Broker
from mqkit.errors import ConfigurationError, MessageTooLargeError, MqkitError
from mqkit.message import Message
from mqkit.outbox.schema import CHANNEL, TABLE, create_all, outbox
from mqkit.outbox.status import outbox_status
from mqkit.sql import check_dialect, engine_for, message_of
from mqkit.stats import Counters
from mqkit.telemetry import metering, polling
from mqkit.wire import BODY_IN_OUTBOX, dead_letter_copy

log = logging.getLogger("mqkit.outbox")

GROUP = "mqkit-outbox"  # the "group" on DLQ notes about rows the broker refused
OnPublished = Callable[[Sequence[Message]], Awaitable[None]]

# The advisory-lock namespace for outbox keys ("mqkt"), apart from the application's own locks.
_LOCK_SPACE = 0x6D716B74
_COLUMNS = "seq, id, topic, key, headers, body, content_type, created_at"

# PostgreSQL, one statement: the keys at the head of the table; those this relay can lock,
# decided once for all of them (a lock test inside the row scan could fail for an early row
# and succeed for a later one, if its holder committed between the two, and send the later
# row first); the oldest rows of those keys (and of no key), skipping rows locked by other
# relays; marked (deleted, or stamped with sent_at) in the same statement. The transaction
# commits only after the broker confirmed them.
_CLAIM_POSTGRES = f"""WITH head AS (
  SELECT DISTINCT key FROM (
    SELECT key FROM {TABLE} WHERE sent_at IS NULL AND error IS NULL ORDER BY seq LIMIT :n) h
  WHERE key IS NOT NULL),
mine AS MATERIALIZED (
  SELECT key FROM head WHERE pg_try_advisory_xact_lock({_LOCK_SPACE}, hashtext(key))),
claimed AS (
  SELECT seq FROM {TABLE}
  WHERE sent_at IS NULL AND error IS NULL AND (key IS NULL OR key IN (SELECT key FROM mine))
  ORDER BY seq LIMIT :n FOR UPDATE SKIP LOCKED)
{{mark}}
RETURNING o.seq, o.id, o.topic, o.key, o.headers, o.body, o.content_type, o.created_at"""
# Run on psycopg's own cursor (%(name)s parameters): it returns plain tuples, sparing the
# relay SQLAlchemy's row objects, a measurable share of its CPU at 500 rows a batch.
_DELETE_CLAIMED = _CLAIM_POSTGRES.format(
    mark=f"DELETE FROM {TABLE} o USING claimed WHERE o.seq = claimed.seq"
).replace(":n", "%(n)s")
_STAMP_CLAIMED = _CLAIM_POSTGRES.format(
    mark=f"UPDATE {TABLE} o SET sent_at = %(now)s FROM claimed WHERE o.seq = claimed.seq"
).replace(":n", "%(n)s")
# Batches a PostgreSQL relay claims in one transaction: it claims the next while the broker
# confirms the last, so the database and the broker work at the same time.
_BATCHES_PER_TRANSACTION = 8

_CLAIM_SQLITE = text(
    f"""UPDATE {TABLE} SET claimed_by = :me, claimed_until = :until
WHERE seq IN (
  SELECT o.seq FROM {TABLE} o
  WHERE o.sent_at IS NULL AND o.error IS NULL
    AND (o.claimed_until IS NULL OR o.claimed_until < :now)
    AND (o.key IS NULL OR NOT EXISTS (
      SELECT 1 FROM {TABLE} h
      WHERE h.key = o.key AND h.seq < o.seq AND h.sent_at IS NULL AND h.error IS NULL
        AND h.claimed_until >= :now))
  ORDER BY o.seq LIMIT :n)
RETURNING {_COLUMNS}"""
)


@dataclass
class RelayStats(Counters):
    relayed: int = 0  # rows published and marked by this relay
    failed: int = 0  # rows the broker refused for good: kept, with `error` set


class OutboxRelay:
    """Relays one database's outbox to one broker; run as many side by side as you like."""

    def __init__(
        self,
        db: str | AsyncEngine,
        broker: Broker,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        retention: float = 0.0,
        lease: float = 30.0,
        listen: bool = True,
        on_published: OnPublished | None = None,
        metrics_interval: float = polling.DEFAULT_INTERVAL,
    ) -> None:
        """`retention`: seconds to keep sent rows (0 deletes them at once). `lease`: SQLite
        only, how long a claimed batch is held before another relay may take it over.
        `on_published`: called with each batch after the broker confirmed it and before
        its marks are committed (metrics; the crash tests kill the relay there).
        `metrics_interval`: how often the backlog is read for the metrics."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._owns = isinstance(db, str)
        self.engine = engine_for(db) if isinstance(db, str) else db
        check_dialect(self.engine)
        self.broker = broker
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self.lease = lease
        self.listen = listen
        self.on_published = on_published
        self.metrics_interval = metrics_interval
        self.stats = RelayStats()
        self._me = uuid.uuid4().hex
        self._postgres = self.engine.dialect.name == "postgresql"
        self._attributes: dict[str, str | int] = {"mqkit.database": _database(self.engine)}

    @property
    def relayed(self) -> int:
        return self.stats.relayed

    @property
    def failed(self) -> int:
        return self.stats.failed

    async def create(self) -> None:
        """Create the outbox table if missing (what `mqkit outbox init` does)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(create_all)

    async def close(self) -> None:
        if self._owns:
            await self.engine.dispose()

    # -- one round ------------------------------------------------------------------------------

    async def relay_once(self) -> int:
        """Relay what is waiting, up to a few batches; the number of rows relayed (0: none)."""
        n = await (self._relay_postgres() if self._postgres else self._relay_sqlite())
        self.stats.relayed += n
        meters = metering.instruments()
        if n and meters is not None:
            meters.outbox_relayed.add(n, self._attributes)
        return n

    async def _relay_postgres(self) -> int:
        """Claim-and-mark batches in one transaction, each claimed while the broker confirms
        the one before; published strictly one after the other, so a key's order holds. The
        marks commit once every batch is confirmed; a failure rolls them all back."""
        total = 0
        async with self.engine.begin() as conn:
            rows = await self._claim_postgres(conn)
            for batch in range(_BATCHES_PER_TRANSACTION):
                if not rows:
                    break
                publishing = asyncio.ensure_future(self._publish(rows))
                more: Sequence[Any] = []
                try:
                    full = len(rows) == self.batch_size
                    if full and batch + 1 < _BATCHES_PER_TRANSACTION:
                        more = await self._claim_postgres(conn)
                finally:
                    failed = await publishing  # raises (and rolls back) if publishing failed
                if failed:
                    await self._keep_failed(conn, rows, failed)
                total += len(rows)
                rows = more
        return total

    async def _claim_postgres(self, conn: AsyncConnection) -> Sequence[Any]:
        claim = _STAMP_CLAIMED if self.retention > 0 else _DELETE_CLAIMED
        driver = (await conn.get_raw_connection()).driver_connection
        async with driver.cursor(row_factory=namedtuple_row) as cursor:  # type: ignore[union-attr]
            await cursor.execute(claim, {"n": self.batch_size, "now": time.time()})
            rows = await cursor.fetchall()
        return sorted(rows, key=_seq)

    async def _relay_sqlite(self) -> int:
        now = time.time()
        params = {"me": self._me, "now": now, "until": now + self.lease, "n": self.batch_size}
        async with self.engine.begin() as conn:
            rows = sorted((await conn.execute(_CLAIM_SQLITE, params)).all(), key=_seq)
        if rows:
            failed = await self._publish(rows)
            async with self.engine.begin() as conn:
                await self._mark_sqlite(conn, rows, failed)
        return len(rows)

    async def drain(self) -> int:
        """Relay until no unsent row is left; the number relayed."""
        total = 0
        while n := await self.relay_once():
            total += n
        return total

    async def _publish(self, rows: Sequence[Any]) -> dict[int, str]:
        """Publish the batch; rows the broker can never take are left out, and returned
        (seq -> reason) to be kept in the table as failed, with a note on the DLQ."""
        messages: dict[int, Message] = {}
        failed: dict[int, tuple[Message, Exception]] = {}
        for row in rows:
            try:
                messages[row.seq] = message_of(row)
            except ValueError as exc:  # headers that are not JSON: written by hand, not by add()
                failed[row.seq] = (Message(topic=row.topic, body=b"", id=row.id), exc)
        try:
            await self.broker.send(list(messages.values()), created=True)
        except (MessageTooLargeError, ConfigurationError):
            # One bad row must not hold back the rest: publish one by one, set the bad aside.
            for seq, message in list(messages.items()):
                try:
                    await self.broker.send([message], created=True)
                except (MessageTooLargeError, ConfigurationError) as exc:
                    failed[seq] = (messages.pop(seq), exc)
        if failed:
            await self._dead_letter(list(failed.values()))
        if self.on_published is not None:
            await self.on_published(list(messages.values()))
        return {seq: f"{type(exc).__name__}: {exc}" for seq, (_, exc) in failed.items()}

    async def _dead_letter(self, failed: list[tuple[Message, Exception]]) -> None:
        """Tell the DLQ readers. The body may be what the broker refused, so the note goes
        without it when needed; the row, body included, stays in the outbox table."""
        notes = []
        for message, exc in failed:
            log.error("outbox row %s cannot be published, kept as failed: %s", message.id, exc)
            note = dead_letter_copy(message, exc, group=GROUP)
            if note.size > self.broker.max_message_bytes:
                headers = {**note.headers, BODY_IN_OUTBOX: str(len(note.body))}
                note = note.with_changes(body=b"", headers=headers)
            notes.append(note)
        await self.broker.dead_letter(notes)
        self.stats.failed += len(failed)

    async def _mark_sqlite(
        self, conn: AsyncConnection, rows: Sequence[Any], failed: dict[int, str]
    ) -> None:
        mine = [outbox.c.seq.in_([r.seq for r in rows]), outbox.c.claimed_by == self._me]
        if self.retention > 0:
            await conn.execute(
                update(outbox).where(*mine).values(sent_at=time.time(), claimed_by=None)
            )
        else:
            await conn.execute(delete(outbox).where(*mine))
        await self._keep_failed(conn, rows, failed)

    async def _keep_failed(
        self, conn: AsyncConnection, rows: Sequence[Any], failed: dict[int, str]
    ) -> None:
        """Put refused rows back as unsent, with their error (the claim marked them)."""
        for row in rows:
            if row.seq in failed:
                values = {**row._asdict(), "error": failed[row.seq][:2000], "sent_at": None}
                statement = (
                    update(outbox).where(outbox.c.seq == row.seq).values(**values)
                    if self.retention > 0
                    else outbox.insert().values(**values)
                )
                await conn.execute(statement)

    async def purge_sent(self) -> int:
        """Delete sent rows older than the retention; the number deleted."""
        cutoff = time.time() - self.retention
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(outbox).where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < cutoff)
            )
        return int(result.rowcount)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until `stop` is set (or forever). Broker and database failures are logged and
        retried with backoff; the rows wait in the table meanwhile."""
        stop = stop or asyncio.Event()
        waker = _Waker(self.engine if self._postgres and self.listen else None)
        backoff, purged_at = 0.0, 0.0
        backlog = self._meter_backlog()
        try:
            while not stop.is_set():
                try:
                    n = await self.relay_once()
                    if self.retention > 0 and time.monotonic() - purged_at > 60:
                        await self.purge_sent()
                        purged_at = time.monotonic()
                    backoff = 0.0
                except (MqkitError, SQLAlchemyError, OSError) as exc:
                    backoff = min(30.0, max(0.5, backoff * 2))
                    log.warning("outbox relay: %s (retrying in %.1fs)", exc, backoff)
                    await _sleep_unless(stop, backoff)
                    continue
                if n < self.batch_size:
                    await waker.wait(stop, self.poll_interval)
        finally:
            await polling.stop(backlog)
            await waker.close()

    def _meter_backlog(self) -> asyncio.Task[None] | None:
        """The backlog gauges, read every `metrics_interval` while metrics are on."""
        meters = metering.instruments()
        if meters is None:
            return None

        async def read() -> None:
            status = await outbox_status(self.engine)
            meters.set("mqkit.outbox.backlog", status.unsent, self._attributes)
            meters.set("mqkit.outbox.lag", status.lag, self._attributes)

        return polling.start(self.metrics_interval, read, "the outbox backlog")


def _database(engine: AsyncEngine) -> str:
    """The database's name in the metrics' attributes (a SQLite file's path)."""
    return str(engine.url.database or "")


def _seq(row: Any) -> int:
    return int(row.seq)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class _Waker:
    """Waits for the next poll: until a NOTIFY on PostgreSQL (LISTEN on its own autocommit
    connection), else until the interval passes. A lost connection falls back to polling
    and is re-opened on the next wait."""

    def __init__(self, engine: AsyncEngine | None) -> None:
        self._conninfo = (
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            if engine is not None
            else None
        )
        self._conn: Any = None

    async def wait(self, stop: asyncio.Event, timeout: float) -> None:
        if self._conninfo is None:
            await _sleep_unless(stop, timeout)
            return
        try:
            if self._conn is None:
                import psycopg

                self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                await self._conn.execute(f"LISTEN {CHANNEL}")
            # Bounded by the poll interval, so a stop is seen within it too.
            async for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                pass
        except Exception as exc:  # psycopg's errors: fall back to polling until it works
            log.warning("outbox relay: LISTEN failed (%s); polling", exc)
            await self.close()
            await _sleep_unless(stop, timeout)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()
