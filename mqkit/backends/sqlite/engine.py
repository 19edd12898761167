"""The log and group operations as SQL, run on the connection thread."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mqkit.backends.sqlite.connection import Connection
from mqkit.backends.sqlite.schema import CLAIM, INSERT
from mqkit.broker import Start
from mqkit.errors import BrokerUnavailableError, ClosedError
from mqkit.lag import Lag
from mqkit.leasing import Claimed, Signal, Token
from mqkit.message import Message
from mqkit.urls import mask
from mqkit.wire import FIRST_FAILED_AT

log = logging.getLogger("mqkit")

T = TypeVar("T")


class SqliteEngine:
    """Log and group operations as SQL, run on the connection thread."""

    WINDOW = 1000

    def __init__(self, connection: Connection, url: str) -> None:
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
        await self._call(lambda conn: conn.executemany(INSERT, rows))

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
                CLAIM,
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
                "UPDATE mq_pending SET ready_at = ?, leased = 0, failed_at = coalesce(failed_at, ?)"
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
                "UPDATE mq_pending SET ready_at = ?, leased = 0, attempt = attempt - ?"
                " WHERE topic = ? AND grp = ? AND seq = ? AND attempt = ?",
                rows,
            )
        )

    async def lag(self, topic: str, group: str) -> Lag:
        def read(conn: sqlite3.Connection) -> Lag:
            now = time.time()
            row = conn.execute(
                "SELECT cursor FROM mq_groups WHERE topic = ? AND grp = ?", (topic, group)
            ).fetchone()
            cursor = row[0] if row else 0  # a new group starts at the earliest
            after, oldest_after = conn.execute(
                "SELECT count(*), min(created_at) FROM mq_messages WHERE topic = ? AND seq > ?",
                (topic, cursor),
            ).fetchone()
            pending, in_flight, oldest_pending = conn.execute(
                "SELECT count(*), coalesce(sum(p.leased AND p.ready_at > ?), 0),"
                " min(m.created_at) FROM mq_pending p JOIN mq_messages m ON m.seq = p.seq"
                " WHERE p.topic = ? AND p.grp = ?",
                (now, topic, group),
            ).fetchone()
            oldest = min((t for t in (oldest_after, oldest_pending) if t is not None), default=None)
            return Lag(
                topic,
                group,
                waiting=after + pending - in_flight,
                in_flight=in_flight,
                oldest_age=None if oldest is None else max(0.0, now - oldest),
            )

        return await self._call(read, write=False, wakes=False)

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
