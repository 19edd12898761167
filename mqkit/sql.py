"""Database URLs and engines for mqkit's SQL features (idempotency, outbox, half messages).

Plain URLs (`postgresql://...`, `sqlite:///path`) get the async drivers mqkit installs with
the `sql` extra: psycopg 3 and aiosqlite. URLs naming a driver are used as given.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mqkit.errors import MqkitError
from mqkit.urls import mask

SUPPORTED = ("postgresql", "sqlite")


def async_url(url: str) -> str:
    """Plain database URLs get the async driver mqkit installs (psycopg 3, aiosqlite)."""
    for plain, driver in (
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def engine_for(url: str) -> AsyncEngine:
    """An engine for a PostgreSQL or SQLite URL; anything else is a clear error."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise MqkitError(f"not a database URL: {mask(url)}") from None
    if backend not in SUPPORTED and backend != "postgres":
        raise MqkitError(f"mqkit supports PostgreSQL and SQLite databases, not {mask(url)}")
    try:
        return _create(async_url(url))
    except Exception as exc:  # a missing driver, a bad option
        raise MqkitError(f"cannot use database {mask(url)}: {exc}") from None


def check_dialect(engine: AsyncEngine) -> None:
    if engine.dialect.name not in SUPPORTED:
        raise MqkitError(f"mqkit supports PostgreSQL and SQLite, not {engine.dialect.name}")


def _create(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):  # writers queue on the file lock instead of failing at once
        return create_async_engine(url, connect_args={"timeout": 30})
    return create_async_engine(url, pool_pre_ping=True)
