"""Message ids: UUIDv7 (RFC 9562), time-ordered and unique without coordination.

Within one process ids are strictly increasing even when the wall clock steps backwards:
the generator keeps the last millisecond it used and, while the clock is behind it, counts
up in the 12-bit `rand_a` field (RFC 9562 section 6.2, method 1). When that counter runs out
it borrows the next millisecond instead of sleeping, so a clock rollback never stalls
publishing. The 62 random bits of `rand_b` keep ids from different processes apart.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

_COUNTER_MAX = 0xFFF
_RANDOM_MASK = (1 << 62) - 1


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class IdGenerator:
    """Produces UUIDv7 strings; thread-safe. `clock` returns Unix time in milliseconds."""

    def __init__(self, clock: Callable[[], int] = _wall_clock_ms) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def new_int(self) -> int:
        now = self._clock()
        with self._lock:
            if now > self._last_ms:
                self._last_ms = now
                # Start low in the counter range so that a burst within one ms has room.
                self._counter = int.from_bytes(os.urandom(1)) << 2
            else:
                self._counter += 1
                if self._counter > _COUNTER_MAX:
                    self._last_ms += 1
                    self._counter = 0
            ms, counter = self._last_ms, self._counter
        rand_b = int.from_bytes(os.urandom(8)) & _RANDOM_MASK
        return (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b

    def new(self) -> str:
        return str(uuid.UUID(int=self.new_int()))


_default = IdGenerator()


def new_id() -> str:
    """A fresh UUIDv7 string from the process-wide generator."""
    return _default.new()


def id_timestamp_ms(message_id: str) -> int:
    """The Unix millisecond timestamp embedded in a UUIDv7 id."""
    return uuid.UUID(message_id).int >> 80
