"""The shared conformance suite, unchanged, on Redis Cluster (scripts/services redis-cluster:
three primaries with a replica each) at $MQKIT_TEST_REDIS_CLUSTER_URL: every key mqkit keeps
beside a topic's stream is in the stream's slot, so no command raises CROSSSLOT."""

from __future__ import annotations

import os

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance import MakeUrl, with_options

pytestmark = pytest.mark.cluster

CLUSTER = os.environ.get(
    "MQKIT_TEST_REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
)


@pytest.fixture
def make_url() -> MakeUrl:
    return lambda options="": with_options(CLUSTER, options)
