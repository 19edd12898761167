"""`sqlite:///path/to.db`: the embedded, durable default backend.

One database file holds every topic. It is safe for several processes on one machine: SQLite
in WAL mode serialises writers, each claim runs in one write transaction, and a consumer that
dies simply lets its leases run out. `PRAGMA data_version` tells a process when another one
committed, so consumers wake within a few milliseconds without hammering the file.

Every call goes to one thread that owns the connection. Calls that arrive while it is busy
are run together in a single transaction, so many concurrent publishes or acks cost one
commit (group commit) instead of one each.

URL options: lease (30s), retention (7d), synchronous (normal|full), busy_timeout (30s),
poll (5ms), max_message_bytes (2MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from mqkit import options
from mqkit.broker import Start
from mqkit.capabilities import Capabilities
from mqkit.errors import BrokerUnavailableError, ClosedError, ConfigurationError
from mqkit.leasing import Claimed, LeasingBroker, Signal, Token
from mqkit.message import Message
from mqkit.urls import mask
from mqkit.wire import FIRST_FAILED_AT

log = logging.getLogger("mqkit")

T = TypeVar("T")

SCHEMA_VERSION = 2  # 2: mq_pending.failed_at

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mq_messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT NOT NULL,
    id           TEXT NOT NULL,
    key          TEXT,
    headers      TEXT NOT NULL,
    body         BLOB NOT NULL,
    content_type TEXT NOT NULL,
    created_at   REAL NOT NULL,
    visible_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mq_messages_topic ON mq_messages (topic, seq);
CREATE INDEX IF NOT EXISTS mq_messages_created ON mq_messages (created_at);

CREATE TABLE IF NOT EXISTS mq_groups (
    topic      TEXT NOT NULL,
    grp        TEXT NOT NULL,
    cursor     INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (topic, grp)
) WITHOUT ROWID;

-- Entries of a group that are due or in flight: ready_at is when the entry may be claimed
-- (its delay or its lease ends); acked entries are deleted. failed_at: its first nack.
CREATE TABLE IF NOT EXISTS mq_pending (
    topic     TEXT NOT NULL,
    grp       TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    key       TEXT,
    attempt   INTEGER NOT NULL,
    ready_at  REAL NOT NULL,
    failed_at TEXT,
    PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mq_pending_ready ON mq_pending (topic, grp, ready_at);
CREATE INDEX IF NOT EXISTS mq_pending_key ON mq_pending (topic, grp, key, seq)
    WHERE key IS NOT NULL;
"""

_INSERT = (
    "INSERT INTO mq_messages (topic, id, key, headers, body, content_type, created_at, visible_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

_CLAIM = """
UPDATE mq_pending SET attempt = attempt + 1, ready_at = :lease_until
WHERE topic = :topic AND grp = :grp AND seq IN (
    SELECT p.seq FROM mq_pending p
    WHERE p.topic = :topic AND p.grp = :grp AND p.ready_at <= :now
      AND (p.key IS NULL OR NOT EXISTS (
          SELECT 1 FROM mq_pending q
          WHERE q.topic = :topic AND q.grp = :grp AND q.key = p.key AND q.seq < p.seq))
    ORDER BY p.seq LIMIT :limit)
RETURNING seq, attempt, failed_at
"""


def database_path(url: str) -> Path:
    """The file of a sqlite URL, read the way SQLAlchemy reads it: `sqlite:///relative.db`,
    `sqlite:////absolute.db`."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"sqlite URLs have no host: use sqlite:///relative/path.db or "
            f"sqlite:////absolute/path.db, not {mask(url)!r}"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigurationError(f"sqlite URL names no file: {mask(url)!r}")
    return Path(path).expanduser()


@dataclass(slots=True)
class _Call(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    write: bool
    # Whether local consumers should look again once it commits. Not after a claim or a
    # lease extension: they make nothing claimable, and a claim that woke its own claim
    # loop kept an idle consumer spinning on a full core.
    wakes: bool = True


class _Connection:
    """The one thread that talks to the database, batching writes into shared transactions."""

    MAX_BATCH = 512

    def __init__(self, path: Path, *, synchronous: str, busy_timeout: float) -> None:
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._queue: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mqkit-sqlite", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.after_write: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._thread.start()

    def call(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool, wakes: bool = True
    ) -> asyncio.Future[T]:
        if self._closed:
            raise ClosedError("the sqlite connection is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(fn, future, loop, write, wakes))
        return future

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    # -- the thread --------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            conn.executescript(_SCHEMA)  # idempotent, so racing processes are harmless
            _migrate(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return conn

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch: list[_Call[Any]] = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._execute(batch)
        if self._conn is not None:
            self._conn.close()
        # Anything queued after the stop marker fails rather than hangs.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._resolve([(item, False, ClosedError("the sqlite connection is closed"))])

    def _execute(self, batch: list[_Call[Any]]) -> None:
        outcomes: list[tuple[_Call[Any], bool, Any]] = []
        try:
            if self._conn is None:
                self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            self._resolve([(call, False, exc) for call in batch])
            return
        conn = self._conn
        reads = [c for c in batch if not c.write]
        writes = [c for c in batch if c.write]
        for call in reads:
            outcomes.append(self._one(conn, call))
        if writes:
            outcomes.extend(self._transaction(conn, writes))
        self._resolve(outcomes)
        waking = [c for c in writes if c.wakes]
        if waking:
            self._notify_loops(waking)

    def _one(self, conn: sqlite3.Connection, call: _Call[Any]) -> tuple[_Call[Any], bool, Any]:
        try:
            return call, True, _result(call, conn)
        except Exception as exc:
            return call, False, exc

    def _transaction(
        self, conn: sqlite3.Connection, calls: list[_Call[Any]]
    ) -> list[tuple[_Call[Any], bool, Any]]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = []
            for call in calls:
                try:
                    outcomes.append((call, True, _result(call, conn)))
                except sqlite3.Error:
                    raise
                except Exception as exc:  # a call's own refusal; it wrote nothing
                    outcomes.append((call, False, exc))
            conn.execute("COMMIT")
            return outcomes
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(calls) == 1:
                return [(calls[0], False, exc)]
            # One bad call must not fail the others: run each in a transaction of its own.
            return [o for call in calls for o in self._transaction(conn, [call])]

    @staticmethod
    def _resolve(outcomes: list[tuple[_Call[Any], bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Call[Any], bool, Any]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed; nobody waits
                loop.call_soon_threadsafe(_settle_futures, items)

    def _notify_loops(self, writes: list[_Call[Any]]) -> None:
        for loop in {c.loop for c in writes}:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.after_write)


def _result(call: _Call[T], conn: sqlite3.Connection) -> T | None:
    """Run a call; a cursor it returns is closed here and never leaves this thread. Handed
    to the event loop, a cursor is finalized there, which resets its cached statement while
    this thread may be binding the same statement for the next call: SQLITE_MISUSE ("bad
    parameter or other API misuse") on about 1 publish in 3,000 under concurrent load."""
    result = call.fn(conn)
    if isinstance(result, sqlite3.Cursor):
        result.close()
        return None
    return result


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file made by an earlier mqkit up to this schema."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(mq_pending)")}
    if "failed_at" not in columns:
        with contextlib.suppress(sqlite3.OperationalError):  # another process was first
            conn.execute("ALTER TABLE mq_pending ADD COLUMN failed_at TEXT")


def _settle_futures(items: list[tuple[_Call[Any], bool, Any]]) -> None:
    for call, ok, value in items:
        if call.future.done():
            continue
        if ok:
            call.future.set_result(value)
        else:
            call.future.set_exception(value)


class SqliteEngine:
    """Log and group operations as SQL, run on the connection thread."""

    WINDOW = 1000

    def __init__(self, connection: _Connection, url: str) -> None:
        self._db = connection
        self._url = url
        self.signal = Signal()
        connection.after_write = self.signal.notify

    async def _call(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True, wakes: bool = True
    ) -> T:
        try:
            return await self._db.call(fn, write=write, wakes=wakes)
        except sqlite3.Error as exc:
            raise BrokerUnavailableError(f"sqlite store {mask(self._url)} failed: {exc}") from exc

    async def append(self, messages: Sequence[Message], delay: float | None) -> None:
        now = time.time()
        visible_at = now + (delay or 0.0)
        rows = [
            (
                m.topic,
                m.id,
                m.key,
                json.dumps(m.headers) if m.headers else "{}",
                m.body,
                m.content_type,
                m.timestamp,
                visible_at,
            )
            for m in messages
        ]
        await self._call(lambda conn: conn.executemany(_INSERT, rows))

    async def create_group(self, topic: str, group: str, start: Start) -> None:
        def create(conn: sqlite3.Connection) -> None:
            cursor = 0
            if start == "latest":
                row = conn.execute(
                    "SELECT coalesce(max(seq), 0) FROM mq_messages WHERE topic = ?", (topic,)
                ).fetchone()
                cursor = row[0]
            conn.execute(
                "INSERT OR IGNORE INTO mq_groups (topic, grp, cursor, created_at)"
                " VALUES (?, ?, ?, ?)",
                (topic, group, cursor, time.time()),
            )

        await self._call(create)

    async def drop_group(self, topic: str, group: str) -> None:
        def drop(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM mq_pending WHERE topic = ? AND grp = ?", (topic, group))
            conn.execute("DELETE FROM mq_groups WHERE topic = ? AND grp = ?", (topic, group))

        await self._call(drop)

    async def claim(
        self, topic: str, group: str, limit: int, lease: float
    ) -> tuple[list[Claimed], float | None]:
        window = max(self.WINDOW, 2 * limit)

        def claim(conn: sqlite3.Connection) -> tuple[list[Claimed], float | None]:
            now = time.time()
            tg = (topic, group)
            (ready,) = conn.execute(
                "SELECT count(*) FROM mq_pending WHERE topic = ? AND grp = ? AND ready_at <= ?",
                (*tg, now),
            ).fetchone()
            if ready < window:
                _materialize(conn, topic, group, window)
            claimed = conn.execute(
                _CLAIM,
                {
                    "topic": topic,
                    "grp": group,
                    "now": now,
                    "lease_until": now + lease,
                    "limit": limit,
                },
            ).fetchall()
            (next_due,) = conn.execute(
                "SELECT min(ready_at) FROM mq_pending WHERE topic = ? AND grp = ? AND ready_at > ?",
                (*tg, now),
            ).fetchone()
            if not claimed:
                return [], next_due
            attempts = {seq: attempt for seq, attempt, _ in claimed}
            failed = {seq: failed_at for seq, _, failed_at in claimed if failed_at is not None}
            seqs = sorted(attempts)
            marks = ",".join("?" * len(seqs))
            rows = conn.execute(
                "SELECT seq, id, key, headers, body, content_type, created_at FROM mq_messages"
                f" WHERE seq IN ({marks}) ORDER BY seq",
                seqs,
            ).fetchall()
            out = []
            for seq, id_, key, headers, body, content_type, created_at in rows:
                attempt = attempts.pop(seq)
                headers = json.loads(headers) if headers != "{}" else {}
                if seq in failed:
                    headers[FIRST_FAILED_AT] = failed[seq]
                message = Message(
                    topic=topic,
                    body=body,
                    id=id_,
                    key=key,
                    headers=headers,
                    content_type=content_type,
                    timestamp=created_at,
                    attempt=attempt,
                )
                out.append(Claimed(message, (seq, attempt)))
            if attempts:  # their messages were removed by retention: nothing to deliver
                conn.executemany(
                    "DELETE FROM mq_pending WHERE topic = ? AND grp = ? AND seq = ?",
                    [(topic, group, seq) for seq in attempts],
                )
            return out, next_due

        return await self._call(claim, wakes=False)

    async def ack(self, topic: str, group: str, tokens: Sequence[Token]) -> None:
        """Queue the ack and return without waiting for its commit.

        At-least-once holds either way (an ack lost in a crash means a redelivery, never a
        loss), and not waiting lets the acks of a sequential consumer share transactions,
        which is most of the consume rate. Closing the broker writes every queued ack.
        """
        rows = [(topic, group, seq, attempt) for seq, attempt in tokens]
        future = self._db.call(
            lambda conn: conn.executemany(
                "DELETE FROM mq_pending WHERE topic = ? AND grp = ? AND seq = ? AND attempt = ?",
                rows,
            ),
            write=True,
        )
        future.add_done_callback(_log_failed_ack)

    async def nack(
        self, topic: str, group: str, token: Token, delay: float, first_failed_at: str
    ) -> None:
        params = (time.time() + delay, first_failed_at, topic, group, *token)
        await self._call(
            lambda conn: conn.execute(
                "UPDATE mq_pending SET ready_at = ?, failed_at = coalesce(failed_at, ?)"
                " WHERE topic = ? AND grp = ? AND seq = ? AND attempt = ?",
                params,
            )
        )

    async def extend(self, topic: str, group: str, tokens: Sequence[Token], lease: float) -> None:
        now = time.time()
        rows = [(now + lease, topic, group, seq, attempt, now) for seq, attempt in tokens]
        await self._call(
            lambda conn: conn.executemany(
                "UPDATE mq_pending SET ready_at = ? WHERE topic = ? AND grp = ? AND seq = ?"
                " AND attempt = ? AND ready_at > ?",
                rows,
            ),
            wakes=False,
        )

    async def release(
        self, topic: str, group: str, tokens: Sequence[Token], *, undo_attempt: bool
    ) -> None:
        now = time.time()
        undo = 1 if undo_attempt else 0
        rows = [(now, undo, topic, group, seq, attempt) for seq, attempt in tokens]
        await self._call(
            lambda conn: conn.executemany(
                "UPDATE mq_pending SET ready_at = ?, attempt = attempt - ?"
                " WHERE topic = ? AND grp = ? AND seq = ? AND attempt = ?",
                rows,
            )
        )

    async def data_version(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

        return await self._call(read, write=False)

    async def apply_retention(self, retention: float) -> int:
        """Delete messages older than `retention` seconds, as Kafka does: whether or not every
        group has consumed them. Returns how many were deleted."""
        cutoff = time.time() - retention

        def purge(conn: sqlite3.Connection) -> int:
            deleted = conn.execute("DELETE FROM mq_messages WHERE created_at < ?", (cutoff,))
            if deleted.rowcount:
                # Pending entries below the oldest kept message can never be delivered.
                conn.execute(
                    "DELETE FROM mq_pending WHERE seq < (SELECT coalesce(min(seq), 1 << 62)"
                    " FROM mq_messages)"
                )
            return deleted.rowcount

        return await self._call(purge)


def _log_failed_ack(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning(
            "mqkit: an ack was not written (%s); it will be redelivered", future.exception()
        )


def _materialize(conn: sqlite3.Connection, topic: str, group: str, window: int) -> None:
    """Turn up to `window` log entries past the group's cursor into pending entries."""
    row = conn.execute(
        "SELECT cursor FROM mq_groups WHERE topic = ? AND grp = ?", (topic, group)
    ).fetchone()
    if row is None:
        raise ClosedError(f"group {group!r} of topic {topic!r} no longer exists")
    (cursor,) = row
    (top,) = conn.execute(
        "SELECT max(seq) FROM (SELECT seq FROM mq_messages WHERE topic = ? AND seq > ?"
        " ORDER BY seq LIMIT ?)",
        (topic, cursor, window),
    ).fetchone()
    if top is None:
        return
    conn.execute(
        "INSERT INTO mq_pending (topic, grp, seq, key, attempt, ready_at)"
        " SELECT topic, ?, seq, key, 0, visible_at FROM mq_messages"
        " WHERE topic = ? AND seq > ? AND seq <= ?",
        (group, topic, cursor, top),
    )
    conn.execute("UPDATE mq_groups SET cursor = ? WHERE topic = ? AND grp = ?", (top, topic, group))


SYNCHRONOUS = options.choice(
    "synchronous", "normal", ("normal", "full"), "full also survives power loss, at a cost"
)
RETENTION = options.duration("retention", "7d", "messages older than this are deleted")
POLL = options.duration("poll", "5ms", "how often other processes' commits are looked for")
BUSY_TIMEOUT = options.duration("busy_timeout", "30s", "how long a write waits for the lock")


class SqliteBroker(LeasingBroker):
    engine: SqliteEngine
    capabilities = Capabilities(
        durable=True,
        consumer_groups=True,
        redelivery=True,
        ordered_by_key=True,
        delayed_delivery=True,
        replay=True,
        selective_ack=True,
    )

    OPTIONS = (*LeasingBroker.OPTIONS, SYNCHRONOUS, RETENTION, POLL, BUSY_TIMEOUT)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = database_path(url)
        self.retention = self.option(RETENTION)
        self.poll = self.option(POLL)
        self._connection = _Connection(
            self.path,
            synchronous=self.option(SYNCHRONOUS).upper(),
            busy_timeout=self.option(BUSY_TIMEOUT),
        )
        self.engine = SqliteEngine(self._connection, url)
        self._background: list[asyncio.Task[None]] = []

    async def _start(self) -> None:
        if not self.path.parent.exists():
            raise BrokerUnavailableError(
                f"cannot open {self.safe_url}: directory {self.path.parent} does not exist"
            )
        self._connection.start()
        try:
            await self.engine.apply_retention(self.retention)
        except BrokerUnavailableError as exc:
            await self._connection.close()
            raise BrokerUnavailableError(
                f"cannot open {self.safe_url}: {exc.__cause__ or exc}"
            ) from exc
        self._background = [
            asyncio.create_task(self._watch_other_processes(), name="mqkit-sqlite-watch"),
            asyncio.create_task(self._retention_loop(), name="mqkit-sqlite-retention"),
        ]

    async def _close(self) -> None:
        await self._close_subscriptions()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, ClosedError):
                await task
        await self._connection.close()

    async def _send(self, messages: Sequence[Message], delay: float | None) -> None:
        await self.engine.append(messages, delay)

    async def _watch_other_processes(self) -> None:
        """Wake local consumers when another process commits (publish, ack, nack)."""
        last = await self.engine.data_version()
        while True:
            await asyncio.sleep(self.poll if self._subscriptions else 0.2)
            if not self._subscriptions:
                continue
            try:
                version = await self.engine.data_version()
            except BrokerUnavailableError:
                continue
            if version != last:
                last = version
                self.engine.signal.notify()

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.retention / 10)))
            try:
                await self.engine.apply_retention(self.retention)
            except BrokerUnavailableError:
                log.warning("mqkit: retention on %s failed; will try again", self.safe_url)


def default_path() -> Path:
    """Where the default database lives: $XDG_DATA_HOME/mqkit/mqkit.db."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "mqkit" / "mqkit.db"
