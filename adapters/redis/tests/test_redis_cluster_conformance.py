"""The shared conformance suite, unchanged, on Redis Cluster (scripts/services redis-cluster:
three primaries with a replica each) at $MQKIT_TEST_REDIS_CLUSTER_URL: Streams, where every
key mqkit keeps beside a topic's stream is in the stream's slot, so no command raises
CROSSSLOT; and pub/sub, sharded (the default on Redis 7) and classic."""

from __future__ import annotations

import os

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance import MakeUrl, with_options

pytestmark = pytest.mark.cluster

CLUSTER = os.environ.get(
    "MQKIT_TEST_REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
)


PUBSUB = CLUSTER.replace("redis+cluster://", "redis+pubsub+cluster://", 1)
VARIANTS = {
    "streams": CLUSTER,
    "pubsub-sharded": PUBSUB,  # ?sharded=auto: sharded on Redis 7
    "pubsub-classic": with_options(PUBSUB, "sharded=false"),
}


@pytest.fixture(params=sorted(VARIANTS))
def make_url(request: pytest.FixtureRequest) -> MakeUrl:
    base = VARIANTS[request.param]
    return lambda options="": with_options(base, options)
