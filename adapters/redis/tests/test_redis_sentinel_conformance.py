"""The shared conformance suite, unchanged, on Redis with Sentinel (scripts/services
redis-sentinel): the primary found through the Sentinels at $MQKIT_TEST_REDIS_SENTINEL_URL,
publishes waiting for one replica (`?wait=1`)."""

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


@pytest.fixture
def make_url() -> MakeUrl:
    return lambda options="": with_options(SENTINEL, "&".join(o for o in ("wait=1", options) if o))
