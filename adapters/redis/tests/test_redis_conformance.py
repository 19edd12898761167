"""The shared conformance suite on Redis: Streams (redis://) and pub/sub (redis+pubsub://),
on the server at $MQKIT_TEST_REDIS_URL (scripts/services starts one)."""

from __future__ import annotations

import os

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance import MakeUrl, with_options

REDIS = os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
VARIANTS = {"streams": REDIS, "pubsub": REDIS.replace("redis://", "redis+pubsub://", 1)}


@pytest.fixture(params=sorted(VARIANTS))
def make_url(request: pytest.FixtureRequest) -> MakeUrl:
    base = VARIANTS[request.param]
    return lambda options="": with_options(base, options)
