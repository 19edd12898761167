"""Databases for the outbox and half-message tests: a SQLite file, or a fresh schema in the
PostgreSQL that `scripts/services up` starts, so tests never see each other's rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mqkit.outbox.schema import create_all
from mqkit.sql import async_url
from tests.support.services import POSTGRES

DATABASES = ["sqlite", "postgresql"]


@dataclass
class Database:
    name: str
    url: str  # for the CLI and subprocesses; on PostgreSQL it selects the schema
    engine: AsyncEngine
    sync: Engine


class database:
    """An empty database with the outbox table, dropped afterwards."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.schema = f"t_{uuid.uuid4().hex[:12]}"
        if name == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'app.db'}"
        else:  # libpq's options select the schema, for every connection made from the URL
            self.url = f"{POSTGRES}?options=-csearch_path%3D{self.schema}"

    async def __aenter__(self) -> Database:
        if self.name == "postgresql":
            admin = create_engine(async_url(POSTGRES))
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {self.schema}"))
            admin.dispose()
        engine = create_async_engine(async_url(self.url))
        sync = create_engine(async_url(self.url).replace("+aiosqlite", ""))
        async with engine.begin() as conn:
            await conn.run_sync(create_all)
        self.db = Database(self.name, self.url, engine, sync)
        return self.db

    async def __aexit__(self, *exc: object) -> None:
        await self.db.engine.dispose()
        self.db.sync.dispose()
        if self.name == "postgresql":
            admin = create_engine(async_url(POSTGRES))
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {self.schema} CASCADE"))
            admin.dispose()
