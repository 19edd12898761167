"""Which offset a partition may commit when handlers finish out of order.

Records are tracked in the order they were fetched; the commit point is the offset of the
oldest one not yet finished, or one past the last when all are. Offsets need not be
contiguous (transaction markers and compaction leave gaps), so the tracker never assumes
they are.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self._after_last: int | None = None
        self._last_fetched = -1
        self.committed: int | None = None

    def fetched(self, offset: int) -> None:
        self._order.append(offset)
        self._last_fetched = offset

    def is_new(self, offset: int) -> bool:
        """Not fetched before (a seek can have a record fetched twice)."""
        return offset > self._last_fetched

    def finished(self, offset: int) -> None:
        self._done.add(offset)
        while self._order and self._order[0] in self._done:
            first = self._order.popleft()
            self._done.discard(first)
            self._after_last = first + 1

    def commit_point(self) -> int | None:
        """The offset to commit now, or None when nothing new finished."""
        point = self._order[0] if self._order else self._after_last
        if point is None or point == self.committed:
            return None
        if self._order and self._after_last is None:
            return None  # the very first fetched record is still in progress
        return point
