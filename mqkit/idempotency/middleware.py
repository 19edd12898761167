"""The `idempotent` middleware: claim, run, mark done; skip what is done."""

from __future__ import annotations

import logging
import uuid

from mqkit.idempotency.store import Claim, IdempotencyStore
from mqkit.middleware import CallNext, Context, Middleware
from mqkit.retry import Retry

log = logging.getLogger("mqkit")

DAY = 86_400.0


def idempotent(
    store: IdempotencyStore, *, ttl: float = 7 * DAY, lease: float = 60.0, busy_delay: float = 1.0
) -> Middleware:
    """Run the handler at most once per (group, message id) while the mark lasts (`ttl`).

    `lease` bounds how long a claim by a consumer that died outlives it; keep it above the
    slowest handler. A message whose id another consumer is handling right now is retried
    after `busy_delay` seconds rather than run twice at once.
    """
    if lease <= 0 or ttl <= 0:
        raise ValueError("lease and ttl must be > 0")

    async def middleware(ctx: Context, call_next: CallNext) -> None:
        key = f"{ctx.group}:{ctx.message.id}"
        token = uuid.uuid4().hex
        claim = await store.claim(key, token, lease)
        if claim is Claim.DONE:
            log.info("mqkit: %s already handled by group %s; skipped", ctx.message.id, ctx.group)
            ctx.outcome = "duplicate"
            return
        if claim is Claim.BUSY:
            raise Retry(busy_delay, f"{ctx.message.id} is being handled by another consumer")
        try:
            await call_next(ctx)
        except BaseException:
            await store.release(key, token)
            raise
        await store.complete(key, token, ttl)

    return middleware
