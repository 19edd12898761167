"""How far behind the relays are: `mqkit outbox status`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mqkit.outbox.schema import outbox


@dataclass(frozen=True)
class OutboxStatus:
    unsent: int
    lag: float  # seconds since the oldest unsent row was written; 0 when none is waiting
    oldest_unsent_id: str | None
    sent_kept: int  # sent rows still in the table (retention)
    claimed: int  # unsent rows leased by a relay right now (SQLite relays)
    failed: int  # rows the broker refused for good, kept with their error

    def as_dict(self) -> dict[str, object]:
        return {
            "unsent": self.unsent,
            "lag_seconds": round(self.lag, 3),
            "oldest_unsent_id": self.oldest_unsent_id,
            "sent_kept": self.sent_kept,
            "claimed": self.claimed,
            "failed": self.failed,
        }


async def outbox_status(engine: AsyncEngine) -> OutboxStatus:
    now = time.time()
    unsent = (outbox.c.sent_at.is_(None)) & (outbox.c.error.is_(None))
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).where(unsent)) or 0
        oldest = (
            await conn.execute(
                select(outbox.c.id, outbox.c.created_at)
                .where(unsent)
                .order_by(outbox.c.seq)
                .limit(1)
            )
        ).first()
        sent = await conn.scalar(select(func.count()).where(outbox.c.sent_at.is_not(None))) or 0
        failed = await conn.scalar(select(func.count()).where(outbox.c.error.is_not(None))) or 0
        claimed = (
            await conn.scalar(select(func.count()).where(unsent, outbox.c.claimed_until >= now))
            or 0
        )
    return OutboxStatus(
        unsent=int(count),
        lag=max(0.0, now - oldest.created_at) if oldest else 0.0,
        oldest_unsent_id=oldest.id if oldest else None,
        sent_kept=int(sent),
        claimed=int(claimed),
        failed=int(failed),
    )
