"""Retry and dead-lettering: the policy that settles each delivery once the rest of the
chain returns (ack) or raises. A failure is nacked with the RetryPolicy's delay while
attempts last, then dead-lettered with its reason; an explicit Retry is an attempt too; a
poison message (a body that does not decode, or Reject) is dead-lettered at once, since
trying it again cannot help."""

from __future__ import annotations

import logging

from mqkit.broker import Delivery
from mqkit.errors import DecodeError
from mqkit.middleware import CallNext, Context, Middleware
from mqkit.retry import Reject, Retry, RetryPolicy

log = logging.getLogger("mqkit")


def retry_and_dead_letter(policy: RetryPolicy) -> Middleware:
    async def middleware(ctx: Context, call_next: CallNext) -> None:
        delivery = ctx.delivery
        assert delivery is not None, "the retry policy settles a worker's deliveries"
        try:
            await call_next(ctx)
        except Exception as exc:
            await settle_failed(ctx, delivery, policy, exc)
        else:
            await delivery.ack()
            if ctx.outcome is None:
                ctx.outcome = "handled"

    return middleware


async def settle_failed(
    ctx: Context, delivery: Delivery, policy: RetryPolicy, exc: Exception
) -> None:
    """Settle a delivery whose handling raised `exc`, as the policy says; shared with batch
    subscribers (mqkit.worker.batch), which settle each message of a failed batch so."""
    ctx.error = exc
    message = ctx.message
    if isinstance(exc, Retry):
        if policy.exhausted(message.attempt):
            await _dead_letter(ctx, delivery, exc)
        else:
            ctx.outcome = "retried"
            await delivery.nack(exc.delay)
    elif isinstance(exc, DecodeError | Reject):
        ctx.outcome = "rejected"
        await delivery.reject(exc)
    elif policy.should_retry(exc, message.attempt):
        delay = policy.delay(message.attempt)
        ctx.outcome = "retried"
        log.warning(
            "mqkit: %s failed on attempt %d (%s: %s); retrying in %.2fs",
            message.id,
            message.attempt,
            type(exc).__name__,
            exc,
            delay,
        )
        await delivery.nack(delay)
    else:
        await _dead_letter(ctx, delivery, exc)


async def _dead_letter(ctx: Context, delivery: Delivery, exc: Exception) -> None:
    ctx.outcome = "dead_lettered"
    message = ctx.message
    log.error(
        "mqkit: %s dead-lettered after attempt %d: %s: %s",
        message.id,
        message.attempt,
        type(exc).__name__,
        exc,
    )
    await delivery.reject(exc)
