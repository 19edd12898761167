"""What `mqkit status` shows: per topic and group, the backlog, what is in flight, the oldest
message's age and the dead letters (from `broker.lag`, see mqkit/lag.py); and, from the
application's database, the outbox's backlog, the half messages not yet resolved, and the
webhook endpoints' health. Read-only: a table that does not exist is left out, never made.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mqkit.broker import Broker
from mqkit.lag import Lag
from mqkit.wire import DLQ_GROUP, dlq_topic

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from mqkit.outbox.status import OutboxStatus


@dataclass(frozen=True)
class GroupStatus:
    lag: Lag
    dead_letters: int  # in `<topic>.dlq`, not yet replayed or purged


@dataclass(frozen=True)
class HalfStatus:
    group: str
    pending: int  # prepared or mid-commit
    oldest_age: float


@dataclass(frozen=True)
class EndpointStatus:
    id: str
    url: str  # masked
    enabled: bool
    failing_since: float | None
    last_success: float | None


@dataclass(frozen=True)
class Status:
    broker: str  # the URL, masked
    groups: list[GroupStatus]
    outbox: OutboxStatus | None = None  # None: no database given, or no outbox table in it
    half: list[HalfStatus] | None = None
    webhooks: list[EndpointStatus] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "groups": [
                {
                    "topic": g.lag.topic,
                    "group": g.lag.group,
                    "waiting": g.lag.waiting,
                    "in_flight": g.lag.in_flight,
                    "oldest_age_seconds": _round(g.lag.oldest_age),
                    "dead_letters": g.dead_letters,
                }
                for g in self.groups
            ],
            "outbox": None if self.outbox is None else self.outbox.as_dict(),
            "half": None if self.half is None else [asdict(h) for h in self.half],
            "webhooks": None if self.webhooks is None else [asdict(e) for e in self.webhooks],
        }


async def group_status(broker: Broker, pairs: list[tuple[str, str]]) -> list[GroupStatus]:
    out = []
    for topic, group in pairs:
        lag = await broker.lag(topic, group)
        dead = await broker.lag(dlq_topic(topic), DLQ_GROUP)
        out.append(GroupStatus(lag, dead.unhandled))
    return out


async def database_status(
    engine: AsyncEngine,
) -> tuple[OutboxStatus | None, list[HalfStatus] | None, list[EndpointStatus] | None]:
    """The outbox, half-message and webhook tables that `engine`'s database has."""
    from sqlalchemy import inspect

    from mqkit.outbox.schema import TABLE as OUTBOX
    from mqkit.outbox.status import outbox_status

    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        half = await _half(conn) if "mqkit_half" in tables else None
        webhooks = await _endpoints(conn, tables) if "mqkit_webhook_endpoints" in tables else None
    outbox = await outbox_status(engine) if OUTBOX in tables else None
    return outbox, half, webhooks


async def _half(conn: AsyncConnection) -> list[HalfStatus]:
    from sqlalchemy import func, select

    from mqkit.half.sql import half
    from mqkit.half.store import ACTIVE

    now = time.time()
    rows = await conn.execute(
        select(half.c.grp, func.count(), func.min(half.c.created_at))
        .where(half.c.state.in_(ACTIVE))
        .group_by(half.c.grp)
        .order_by(half.c.grp)
    )
    return [HalfStatus(grp, int(n), round(max(0.0, now - oldest), 3)) for grp, n, oldest in rows]


async def _endpoints(conn: AsyncConnection, tables: set[str]) -> list[EndpointStatus]:
    from sqlalchemy import func, select

    from mqkit.urls import mask
    from mqkit.webhooks.attempts import attempts_table
    from mqkit.webhooks.endpoints import endpoints_table as endpoints

    last: dict[str, float] = {}
    if attempts_table.name in tables:
        done = attempts_table.c
        rows = await conn.execute(
            select(done.endpoint_id, func.max(done.at)).where(done.ok).group_by(done.endpoint_id)
        )
        last = {endpoint_id: at for endpoint_id, at in rows}
    rows = await conn.execute(
        select(
            endpoints.c.id, endpoints.c.url, endpoints.c.enabled, endpoints.c.failing_since
        ).order_by(endpoints.c.created_at)
    )
    return [
        EndpointStatus(r.id, mask(r.url), bool(r.enabled), r.failing_since, last.get(r.id))
        for r in rows
    ]


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
