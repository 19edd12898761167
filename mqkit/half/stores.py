"""`store_for(url)`: the half-message store a URL names."""

from __future__ import annotations

from mqkit.errors import ConfigurationError, UnknownSchemeError
from mqkit.half.store import HalfStore
from mqkit.registry import HALF_STORES, plugin


def store_for(url: str) -> HalfStore:
    """PostgreSQL or SQLite (`postgresql://...`, `sqlite:///path`), built in, or a store an
    adapter registers for the URL's scheme (mqkit-redis: `redis://...`)."""
    try:
        store_class = plugin(HALF_STORES, url, "half-message store")
    except UnknownSchemeError as exc:
        raise ConfigurationError(
            f"half messages are stored in PostgreSQL, SQLite or Redis: {exc}"
        ) from None
    except ModuleNotFoundError:  # the SQL store, without SQLAlchemy installed
        raise ConfigurationError(
            'this half-message store needs the sql extra: pip install "mqkit[sql]"'
        ) from None
    store: HalfStore = store_class(url)
    return store
