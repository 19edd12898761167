"""`sqlite:///path/to.db`, the embedded default backend: `broker` (the URL, its options,
the background loops), `engine` (the log and group operations as SQL), `connection` (the
one thread that owns the connection, with group commit) and `schema`."""

from mqkit.backends.sqlite.broker import SqliteBroker, database_path
from mqkit.backends.sqlite.engine import SqliteEngine
from mqkit.paths import default_database as default_path

__all__ = ["SqliteBroker", "SqliteEngine", "database_path", "default_path"]
