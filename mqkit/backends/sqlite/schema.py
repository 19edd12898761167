"""The database's schema and the statements the engine runs most: one file for every
topic (mq_messages, the log), its consumer groups (mq_groups, their cursors) and what each
group has in hand (mq_pending, with leases)."""

from __future__ import annotations

import contextlib
import sqlite3

SCHEMA_VERSION = 3  # 2: mq_pending.failed_at; 3: mq_pending.leased

SCHEMA = """
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
-- leased: 1 from a claim until a nack or release (lag tells in flight from delayed by it).
CREATE TABLE IF NOT EXISTS mq_pending (
    topic     TEXT NOT NULL,
    grp       TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    key       TEXT,
    attempt   INTEGER NOT NULL,
    ready_at  REAL NOT NULL,
    failed_at TEXT,
    leased    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mq_pending_ready ON mq_pending (topic, grp, ready_at);
CREATE INDEX IF NOT EXISTS mq_pending_key ON mq_pending (topic, grp, key, seq)
    WHERE key IS NOT NULL;
"""

INSERT = (
    "INSERT INTO mq_messages (topic, id, key, headers, body, content_type, created_at, visible_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

CLAIM = """
UPDATE mq_pending SET attempt = attempt + 1, ready_at = :lease_until, leased = 1
WHERE topic = :topic AND grp = :grp AND seq IN (
    SELECT p.seq FROM mq_pending p
    WHERE p.topic = :topic AND p.grp = :grp AND p.ready_at <= :now
      AND (p.key IS NULL OR NOT EXISTS (
          SELECT 1 FROM mq_pending q
          WHERE q.topic = :topic AND q.grp = :grp AND q.key = p.key AND q.seq < p.seq))
    ORDER BY p.seq LIMIT :limit)
RETURNING seq, attempt, failed_at
"""


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a file made by an earlier mqkit up to this schema."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(mq_pending)")}
    added = {"failed_at": "TEXT", "leased": "INTEGER NOT NULL DEFAULT 0"}
    for column, declaration in added.items():
        if column not in columns:
            with contextlib.suppress(sqlite3.OperationalError):  # another process was first
                conn.execute(f"ALTER TABLE mq_pending ADD COLUMN {column} {declaration}")
