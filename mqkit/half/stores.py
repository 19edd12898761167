"""`store_for(url)`: the half-message store a URL names."""

from __future__ import annotations

from mqkit.errors import ConfigurationError
from mqkit.half.store import HalfStore


def store_for(url: str) -> HalfStore:
    """PostgreSQL or SQLite (`postgresql://...`, `sqlite:///path`) or Redis (`redis://...`)."""
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            from mqkit.half.redis import RedisHalfStore

            return RedisHalfStore(url)
        if url.startswith(("postgresql", "postgres:", "sqlite")):
            from mqkit.half.sql import SqlHalfStore

            return SqlHalfStore(url)
    except ModuleNotFoundError as exc:
        extra = "redis" if exc.name and exc.name.startswith("redis") else "sql"
        raise ConfigurationError(
            f'this half-message store needs the {extra} extra: pip install "mqkit[{extra}]"'
        ) from None
    raise ConfigurationError(
        "half messages are stored in PostgreSQL, SQLite or Redis: give a postgresql://, "
        "sqlite:/// or redis:// URL"
    )
