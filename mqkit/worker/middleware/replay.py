"""The replay filter: a DLQ replay goes back to the topic, which every group reads, with
the group it was dead-lettered by in `mqkit-replay-group`; the other groups ack it unseen."""

from __future__ import annotations

from mqkit.middleware import CallNext, Context, Middleware
from mqkit.wire import REPLAY_GROUP


def replay_filter() -> Middleware:
    async def middleware(ctx: Context, call_next: CallNext) -> None:
        if ctx.message.headers.get(REPLAY_GROUP, ctx.group) != ctx.group:
            ctx.outcome = "skipped"
            return
        await call_next(ctx)

    return middleware
