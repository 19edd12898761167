"""The endpoint registry: who gets which topics' messages, signed with which secrets.

Endpoints live in SQL (SQLite by default, PostgreSQL for several dispatcher hosts), table
`mqkit_webhook_endpoints`. The CLI (`mqkit webhook endpoint ...`) edits them; dispatchers
read them every few seconds, so a change takes effect without a restart.

Secret rotation keeps the old secret signing next to the new one for an overlap (default 24
hours): each delivery carries one signature per live secret, so a receiver that still has
only the old secret keeps verifying until it is updated.
"""

from __future__ import annotations

import fnmatch
import json
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from mqkit.broker import validate_topic
from mqkit.errors import InvalidTopicError, MqkitError
from mqkit.sql import SqlTables
from mqkit.webhooks.signing import Secret

DEFAULT_OVERLAP = 24 * 3600.0

metadata = MetaData()
endpoints_table = Table(
    "mqkit_webhook_endpoints",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("topics", Text, nullable=False),  # JSON list of topic names or fnmatch patterns
    Column("secrets", Text, nullable=False),  # JSON list of [secret, expires_at or null]
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", Text),
    Column("rate_limit", Float),
    Column("max_concurrency", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("failing_since", Float),
)


class EndpointNotFound(MqkitError):
    pass


_PATTERN_CHARS = re.compile(r"[*?\[\]!]")


def _fresh_secrets() -> list[tuple[str, float | None]]:
    return [(Secret.generate().text, None)]


class Endpoint(BaseModel):
    """One subscribed HTTP endpoint."""

    id: str = Field(default_factory=lambda: "ep_" + secrets.token_hex(8))
    url: str
    topics: list[str]
    # The first secret is the current one; older ones sign until their expiry (rotation).
    secrets: list[tuple[str, float | None]] = Field(default_factory=lambda: _fresh_secrets())
    enabled: bool = True
    disabled_reason: str | None = None
    rate_limit: float | None = Field(default=None, gt=0)  # deliveries per second
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    description: str = ""
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    failing_since: float | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("an endpoint URL starts with http:// or https://")
        return url

    @field_validator("topics")
    @classmethod
    def _valid_topics(cls, topics: list[str]) -> list[str]:
        """Topics as publish takes them, patterns (orders.*) made of the same characters:
        the dispatcher must be able to subscribe to everything stored here."""
        if not topics:
            raise ValueError("an endpoint subscribes to at least one topic or pattern")
        for topic in topics:
            try:
                validate_topic(_PATTERN_CHARS.sub("x", topic))
            except InvalidTopicError:
                raise ValueError(
                    f"invalid topic {topic!r}: use 1-249 characters from A-Z a-z 0-9 . _ - "
                    "(and * ? [ ] ! in patterns)"
                ) from None
        return topics

    @field_validator("secrets")
    @classmethod
    def _valid_secrets(
        cls, values: list[tuple[str, float | None]]
    ) -> list[tuple[str, float | None]]:
        for text, _ in values:
            Secret(text)  # raises ValueError with the reason
        return values

    def matches(self, topic: str) -> bool:
        return any(t == topic or fnmatch.fnmatchcase(topic, t) for t in self.topics)

    def signing_secrets(self, now: float | None = None) -> list[Secret]:
        """The current secret and every older one still inside its overlap."""
        now = time.time() if now is None else now
        return [Secret(text) for text, expires in self.secrets if expires is None or expires > now]


def _row(endpoint: Endpoint) -> dict[str, Any]:
    data = endpoint.model_dump()
    data["topics"] = json.dumps(endpoint.topics)
    data["secrets"] = json.dumps(endpoint.secrets)
    return data


def _endpoint(row: Any) -> Endpoint:
    data = dict(row._mapping)
    data["topics"] = json.loads(data["topics"])
    data["secrets"] = [tuple(s) for s in json.loads(data["secrets"])]
    return Endpoint.model_validate(data)


class EndpointRegistry(SqlTables):
    """`EndpointRegistry("sqlite:///webhooks.db")` or a PostgreSQL URL, or an engine."""

    def __init__(self, url: str | None = None, *, engine: AsyncEngine | None = None) -> None:
        super().__init__(metadata, url, engine=engine)

    async def add(self, endpoint: Endpoint) -> Endpoint:
        await self.create()
        async with self.engine.begin() as conn:
            await conn.execute(endpoints_table.insert().values(**_row(endpoint)))
        return endpoint

    async def get(self, endpoint_id: str) -> Endpoint:
        await self.create()
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(endpoints_table).where(endpoints_table.c.id == endpoint_id)
                )
            ).first()
        if row is None:
            raise EndpointNotFound(f"no webhook endpoint {endpoint_id!r}")
        return _endpoint(row)

    async def list(self) -> list[Endpoint]:
        await self.create()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(endpoints_table).order_by(endpoints_table.c.created_at)
            )
            return [_endpoint(r) for r in rows]

    async def update(self, endpoint_id: str, **changes: Any) -> Endpoint:
        """Change fields (validated as an Endpoint would be); returns the endpoint as stored."""
        current = await self.get(endpoint_id)
        merged = Endpoint.model_validate(
            {**current.model_dump(), **changes, "updated_at": time.time()}
        )
        values = _row(merged)
        values.pop("id")
        async with self.engine.begin() as conn:
            await conn.execute(
                update(endpoints_table).where(endpoints_table.c.id == endpoint_id).values(**values)
            )
        return merged

    async def set_enabled(
        self, endpoint_id: str, enabled: bool, reason: str | None = None
    ) -> Endpoint:
        # Enabling starts a clean slate: the failure streak that disabled it is forgotten.
        return await self.update(
            endpoint_id,
            enabled=enabled,
            disabled_reason=None if enabled else reason,
            failing_since=None,
        )

    async def disable_if_enabled(self, endpoint_id: str, reason: str) -> bool:
        """Disable, unless someone already did; True when this call disabled it."""
        await self.create()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(endpoints_table)
                .where(endpoints_table.c.id == endpoint_id, endpoints_table.c.enabled.is_(True))
                .values(enabled=False, disabled_reason=reason, updated_at=time.time())
            )
        return bool(result.rowcount)

    async def remove(self, endpoint_id: str) -> None:
        await self.create()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(endpoints_table).where(endpoints_table.c.id == endpoint_id)
            )
        if not result.rowcount:
            raise EndpointNotFound(f"no webhook endpoint {endpoint_id!r}")

    async def rotate_secret(
        self, endpoint_id: str, new: Secret | None = None, *, overlap: float = DEFAULT_OVERLAP
    ) -> Endpoint:
        """Make `new` (or a generated secret) current; older secrets sign until now + overlap."""
        current = await self.get(endpoint_id)
        now = time.time()
        until = now + overlap
        kept: Sequence[tuple[str, float | None]] = [
            (text, until if expires is None else min(expires, until))
            for text, expires in current.secrets
            if expires is None or expires > now
        ]
        fresh = (new or Secret.generate()).text
        return await self.update(endpoint_id, secrets=[(fresh, None), *kept])

    async def mark_failing(self, endpoint_id: str, since: float | None) -> None:
        """Record when the endpoint's current failure streak began (None: it is healthy)."""
        await self.create()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(endpoints_table)
                .where(endpoints_table.c.id == endpoint_id)
                .values(failing_since=since)
            )
