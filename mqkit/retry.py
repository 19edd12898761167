"""When a failed message is tried again, and when it is given up on."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from mqkit.errors import MqkitError


class Retry(MqkitError):
    """Raise from a handler to have the message delivered again after `delay` seconds
    (e.g. a downstream answered Retry-After). Counts as an attempt: after the policy's
    `max_attempts` the message is dead-lettered with this as the reason."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or f"retry requested (delay={delay})")
        self.delay = delay


class Reject(MqkitError):
    """Raise from a handler to send the message to the dead-letter queue at once."""


class BatchFailed(MqkitError):
    """Raise from a batch handler when only some of its messages failed: `failed` names them
    by the items of the list the handler was given (the same objects) or by their Messages.
    The rest of the batch is acked; each failed one is settled as if handling it alone had
    raised `cause` (or the exception this is raised `from`): retried per the policy, at once
    dead-lettered for Reject, redelivered after its delay for Retry. Without a cause, this
    error itself is the reason, retried like any failure."""

    def __init__(
        self, failed: Sequence[object], *, cause: Exception | None = None, reason: str = ""
    ) -> None:
        super().__init__(reason or f"{len(failed)} message(s) of the batch failed")
        self.failed = list(failed)
        self.cause = cause

    def reason_for_each(self) -> Exception:
        """What each failed message is settled for."""
        if self.cause is not None:
            return self.cause
        if isinstance(self.__cause__, Exception):
            return self.__cause__
        return self


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, for at most `max_attempts` deliveries.

    Attempt n (1-based) that fails waits a random time in [0, min(cap, base * 2**(n-1))]
    (full jitter spreads a thundering herd of retries); `jitter=False` waits the upper bound.
    Exceptions in `dead_letter_on` skip the remaining attempts; with `retry_on` set, only
    those exceptions are retried at all.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 300.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dead_letter_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")

    def backoff(self, attempt: int) -> float:
        """The upper bound of the wait after failed attempt `attempt`."""
        return float(min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        bound = self.backoff(attempt)
        if not self.jitter:
            return bound
        return (rng or random).uniform(0.0, bound)

    def exhausted(self, attempt: int) -> bool:
        """Whether failed attempt `attempt` was the last one allowed."""
        return attempt >= self.max_attempts

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        if self.exhausted(attempt):
            return False
        if isinstance(exc, self.dead_letter_on):
            return False
        return isinstance(exc, self.retry_on)
