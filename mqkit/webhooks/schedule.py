"""When a failed webhook delivery is tried again.

The default schedule is Svix's: the first attempt at once, then after 5 s, 5 min, 30 min,
2 h, 5 h, 10 h and 10 h (8 attempts over about 28 hours), each wait jittered by +-20% so
that the retries of a burst do not arrive at an endpoint together. A Retry-After from the
endpoint (429, 502, 503, 504) pushes the next attempt later, never earlier.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from mqkit.urls import parse_duration

SVIX = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
# An endpoint cannot park a delivery for longer than this with a Retry-After.
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class Schedule:
    """`waits[n]` is the wait before attempt n + 1 (waits[0], before the first, is 0)."""

    waits: tuple[float, ...] = SVIX
    jitter: float = 0.2

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """`"0,5s,5m,30m"`: the waits before each attempt, as durations."""
        waits = tuple(parse_duration(part.strip(), name="schedule") for part in text.split(","))
        return cls((0.0, *waits[1:]))

    @property
    def attempts(self) -> int:
        return len(self.waits)

    def wait_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered wait before attempt `attempt` (1-based)."""
        base = self.waits[min(attempt, len(self.waits)) - 1]
        if base == 0 or self.jitter == 0:
            return base
        return base * (rng or random).uniform(1 - self.jitter, 1 + self.jitter)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped; None if
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)
