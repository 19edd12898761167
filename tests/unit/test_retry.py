from __future__ import annotations

import random

import pytest

from mqkit import RetryPolicy


def test_backoff_doubles_up_to_the_cap() -> None:
    p = RetryPolicy(base_delay=1, max_delay=10, jitter=False)
    assert [p.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_full_jitter_stays_within_bounds_and_spreads() -> None:
    p = RetryPolicy(base_delay=1, max_delay=60)
    rng = random.Random(7)
    samples = [p.delay(4, rng) for _ in range(2000)]
    assert all(0 <= s <= 8 for s in samples)
    assert min(samples) < 1 and max(samples) > 7


def test_which_failures_retry() -> None:
    p = RetryPolicy(max_attempts=3, dead_letter_on=(KeyError,))
    assert p.should_retry(ValueError(), 1)
    assert p.should_retry(ValueError(), 2)
    assert not p.should_retry(ValueError(), 3)
    assert not p.should_retry(KeyError(), 1)
    only = RetryPolicy(retry_on=(TimeoutError,))
    assert only.should_retry(TimeoutError(), 1) and not only.should_retry(ValueError(), 1)


def test_policy_validates() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
