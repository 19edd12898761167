"""The shared conformance suite, unchanged, on three Kafka brokers (scripts/services
kafka-cluster): topics replicated 3 times with min.insync.replicas 2, found from the
bootstrap list at $MQKIT_TEST_KAFKA_CLUSTER_URL."""

from __future__ import annotations

import os

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance import MakeUrl, with_options

pytestmark = pytest.mark.cluster

KAFKA_CLUSTER = os.environ.get(
    "MQKIT_TEST_KAFKA_CLUSTER_URL", "kafka://127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
)


@pytest.fixture
def make_url() -> MakeUrl:
    return lambda options="": with_options(KAFKA_CLUSTER, options)
