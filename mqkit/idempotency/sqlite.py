"""An idempotency store in a SQLite file: shared by the worker processes of one host."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from mqkit.idempotency.store import Claim

T = TypeVar("T")
P = ParamSpec("P")

_DONE = "done"  # tokens are 32 hex digits, so never this

SCHEMA = """
CREATE TABLE IF NOT EXISTS mqkit_processed (
    key        TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mqkit_processed_expiry ON mqkit_processed (expires_at);
"""


class SqliteStore:
    """Wall-clock expiry (the file is shared across processes); WAL so readers never wait."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        def call() -> T:
            with self._lock:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn, *args, **kw)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

        return await asyncio.to_thread(call)

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        return await self._run(_claim, key, token, lease)

    async def complete(self, key: str, token: str, ttl: float) -> None:
        await self._run(_put, key, _DONE, ttl)

    async def release(self, key: str, token: str) -> None:
        await self._run(_release, key, token)

    async def purge_expired(self) -> int:
        """Delete marks past their expiry; returns how many."""
        return await self._run(_purge)

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _claim(conn: sqlite3.Connection, key: str, token: str, lease: float) -> Claim:
    now = time.time()
    row = conn.execute(
        "SELECT holder FROM mqkit_processed WHERE key = ? AND expires_at > ?", (key, now)
    ).fetchone()
    if row is not None:
        return Claim.DONE if row[0] == _DONE else Claim.BUSY
    _put(conn, key, token, lease)
    return Claim.NEW


def _put(conn: sqlite3.Connection, key: str, holder: str, ttl: float) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO mqkit_processed (key, holder, expires_at) VALUES (?, ?, ?)",
        (key, holder, time.time() + ttl),
    )


def _release(conn: sqlite3.Connection, key: str, token: str) -> None:
    conn.execute("DELETE FROM mqkit_processed WHERE key = ? AND holder = ?", (key, token))


def _purge(conn: sqlite3.Connection) -> int:
    return conn.execute(
        "DELETE FROM mqkit_processed WHERE expires_at <= ?", (time.time(),)
    ).rowcount
