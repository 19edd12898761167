"""The outbox table, and the SQL that creates it (for `mqkit outbox init` and for migrations).

One row per message, written in the business transaction. `seq` orders rows (and so the
messages of one key); `id` is the message id, fixed at insert. A row is unsent while
`sent_at` is NULL; the relay deletes it once the broker confirmed it, or sets `sent_at` when
sent rows are kept for a while. A row the broker can never take (too large, say) keeps its
`error` and is skipped; `mqkit outbox status` counts those. `claimed_by`/`claimed_until` are
the SQLite relay's leases (PostgreSQL relays hold row locks instead).

On PostgreSQL a statement trigger sends NOTIFY mqkit_outbox on insert, delivered at commit,
so relays wake at once instead of polling.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_mock_engine,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable

TABLE = "mqkit_outbox"
CHANNEL = "mqkit_outbox"

metadata = MetaData()
outbox = Table(
    TABLE,
    metadata,
    # INTEGER PRIMARY KEY is SQLite's rowid: no extra index, and AUTOINCREMENT never reuses one.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("topic", String(249), nullable=False),
    Column("key", Text),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("claimed_by", String(64)),
    Column("claimed_until", Float),
    Column("error", Text),
    Index(
        "mqkit_outbox_unsent",
        "seq",
        postgresql_where=text("sent_at IS NULL AND error IS NULL"),
        sqlite_where=text("sent_at IS NULL AND error IS NULL"),
    ),
    sqlite_autoincrement=True,
)

# The SQLite relay looks up unsent rows of a key to keep per-key order across relays.
_SQLITE_EXTRA = [
    f"CREATE INDEX IF NOT EXISTS {TABLE}_key ON {TABLE} (key, seq) WHERE sent_at IS NULL",
]
_POSTGRES_EXTRA = [
    f"""CREATE OR REPLACE FUNCTION {TABLE}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', '');
  RETURN NULL;
END $$""",
    f"DROP TRIGGER IF EXISTS {TABLE}_notify ON {TABLE}",
    f"CREATE TRIGGER {TABLE}_notify AFTER INSERT ON {TABLE} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_notify()",
]


def create_all(conn: Connection) -> None:
    """Create the table, its indexes and (PostgreSQL) the NOTIFY trigger; idempotent."""
    metadata.create_all(conn)
    for statement in _extra(conn.dialect.name):
        conn.exec_driver_sql(statement)


def create_sql(dialect_name: str) -> str:
    """The DDL `mqkit outbox init` runs, as text for teams that migrate with Alembic."""
    dialect = create_mock_engine(f"{dialect_name}://", executor=print).dialect
    parts = [str(CreateTable(outbox).compile(dialect=dialect)).strip()]
    parts += [str(CreateIndex(i).compile(dialect=dialect)).strip() for i in outbox.indexes]
    parts += [s for s in _extra(dialect_name) if not s.startswith("DROP")]
    return ";\n\n".join(parts) + ";\n"


def _extra(dialect_name: str) -> list[str]:
    return _POSTGRES_EXTRA if dialect_name == "postgresql" else _SQLITE_EXTRA
