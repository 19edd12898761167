"""The shared conformance suite, unchanged, on Redis with Sentinel (scripts/services
redis-sentinel): the primary found through the Sentinels at $MQKIT_TEST_REDIS_SENTINEL_URL:
Streams, publishes waiting for one replica (`?wait=1`), and pub/sub."""

from __future__ import annotations

import os

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance import MakeUrl, with_options

pytestmark = pytest.mark.cluster

SENTINEL = os.environ.get(
    "MQKIT_TEST_REDIS_SENTINEL_URL",
    "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/mqkit/0",
)


VARIANTS = {
    "streams": with_options(SENTINEL, "wait=1"),
    "pubsub": SENTINEL.replace("redis+sentinel://", "redis+pubsub+sentinel://", 1),
}


@pytest.fixture(params=sorted(VARIANTS))
def make_url(request: pytest.FixtureRequest) -> MakeUrl:
    base = VARIANTS[request.param]
    return lambda options="": with_options(base, options)
