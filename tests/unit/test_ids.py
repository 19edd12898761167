from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from mqkit.ids import IdGenerator, id_timestamp_ms, new_id


class SteppingClock:
    """A wall clock we can move, including backwards."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_ids_are_uuid_version_7_with_the_time_in_front() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(new_id())
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= id_timestamp_ms(str(value)) <= after


def test_clock_rollback_of_5s_gives_no_duplicate_no_decrease_no_sleep() -> None:
    clock = SteppingClock(1_800_000_000_000)
    gen = IdGenerator(clock)
    ids = [gen.new() for _ in range(1000)]
    clock.ms -= 5000  # NTP steps the clock back 5 s
    started = time.monotonic()
    ids += [gen.new() for _ in range(20_000)]  # more than the 4096 per-ms counter holds
    elapsed = time.monotonic() - started
    clock.ms += 10_000
    ids += [gen.new() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids), "ids must never decrease"
    assert [uuid.UUID(i).int for i in ids] == sorted(uuid.UUID(i).int for i in ids)
    assert elapsed < 1.0, "a rollback must not make the generator sleep"
    assert all(uuid.UUID(i).version == 7 for i in ids)


def test_monotonic_within_one_millisecond() -> None:
    gen = IdGenerator(SteppingClock(1_800_000_000_000))
    ids = [gen.new() for _ in range(10_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_unique_across_threads() -> None:
    gen = IdGenerator()
    with ThreadPoolExecutor(8) as pool:
        chunks = list(pool.map(lambda _: [gen.new() for _ in range(5000)], range(8)))
    flat = [i for c in chunks for i in c]
    assert len(set(flat)) == len(flat)
    for chunk in chunks:
        assert chunk == sorted(chunk)


def test_independent_generators_do_not_collide() -> None:
    # Two processes in the same millisecond: only the random bits keep them apart.
    clock = SteppingClock(1_800_000_000_000)
    a, b = IdGenerator(clock), IdGenerator(clock)
    ids = [g.new() for _ in range(5000) for g in (a, b)]
    assert len(set(ids)) == len(ids)
