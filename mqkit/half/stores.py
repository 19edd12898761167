"""`store_for(url)`: the half-message store a URL names."""

from __future__ import annotations

from mqkit.errors import ConfigurationError, UnknownSchemeError
from mqkit.half.store import HalfStore
from mqkit.registry import HALF_STORES, plugin


def store_for(url: str) -> HalfStore:
    """PostgreSQL or SQLite (`postgresql://...`, `sqlite:///path`), built in, or a store an
    adapter registers for the URL's scheme (mqkit-redis: `redis://...`)."""
    if url.startswith(("postgresql", "postgres:", "sqlite")):
        try:
            from mqkit.half.sql import SqlHalfStore
        except ModuleNotFoundError:
            raise ConfigurationError(
                'this half-message store needs the sql extra: pip install "mqkit[sql]"'
            ) from None
        return SqlHalfStore(url)
    try:
        store: HalfStore = plugin(HALF_STORES, url, "half-message store")(url)
    except UnknownSchemeError as exc:
        raise ConfigurationError(
            f"half messages are stored in PostgreSQL, SQLite or Redis: {exc}"
        ) from None
    return store
