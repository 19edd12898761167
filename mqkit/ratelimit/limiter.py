"""What every limiter is: a rate, a burst, and one operation, `reserve`.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one number):
each key has a theoretical arrival time `tat`. A request at `now` may go once
`tat - tolerance <= now`, and moves `tat` on by one emission interval (1 / rate). With
tolerance = (burst - 1) intervals, `burst` requests pass at once after a quiet spell, and
then one per interval. A reservation books the next slot and says how long to wait for it,
so waiting callers are served in order without polling.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import Literal, Protocol

from mqkit.errors import ConfigurationError, RateLimitedError
from mqkit.urls import parse_duration

# What a shared limiter does while its store is unreachable (see mqkit_redis.limiter).
Outage = Literal["pause", "local"]

_COUNT = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Rate:
    """Events per second. `Rate.parse("200/s")`, `"30/m"`, `"5/100ms"`."""

    per_second: float

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ConfigurationError(f"a rate must be positive, not {self.per_second!r}")

    @classmethod
    def parse(cls, value: str | float | Rate) -> Rate:
        if isinstance(value, Rate):
            return value
        if isinstance(value, int | float):
            return cls(float(value))
        count, slash, period = (part.strip() for part in value.partition("/"))
        # The period is a duration with its unit (s, 100ms, 2h); a bare unit means one of it.
        if not slash or not _COUNT.fullmatch(count) or not period[-1:].isalpha():
            raise ConfigurationError(f"cannot read {value!r} as a rate (e.g. 200/s, 30/m)")
        if not period[0].isdigit():
            period = "1" + period
        seconds = parse_duration(period, name=f"the period of rate {value!r}")
        if seconds <= 0:
            raise ConfigurationError(f"cannot read {value!r} as a rate: a zero period")
        return cls(float(count) / seconds)

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    def __str__(self) -> str:
        return f"{self.per_second:g}/s"


@dataclass(frozen=True, slots=True)
class Permit:
    """The answer to a reservation: `granted` with `wait` seconds to wait for the slot, or
    refused (it would have had to wait longer than allowed) with `wait` as the retry-after."""

    granted: bool
    wait: float


class Limiter(Protocol):
    rate: Rate
    burst: int

    async def reserve(self, key: str = "", *, max_wait: float = math.inf, cost: int = 1) -> Permit:
        """Book the next `cost` slots for `key` if they come within `max_wait` seconds."""
        ...

    async def close(self) -> None: ...


async def acquire(
    limiter: Limiter, key: str = "", *, timeout: float | None = None, cost: int = 1
) -> float:
    """Wait for `cost` slots (at most `timeout` seconds, else RateLimitedError at once,
    without waiting in vain); the seconds waited."""
    permit = await limiter.reserve(
        key, max_wait=math.inf if timeout is None else timeout, cost=cost
    )
    if not permit.granted:
        raise RateLimitedError(key, permit.wait)
    if permit.wait > 0:
        await asyncio.sleep(permit.wait)
    return permit.wait


def check_burst(burst: int) -> int:
    if burst < 1:
        raise ConfigurationError(f"a burst must be at least 1, not {burst!r}")
    return burst
