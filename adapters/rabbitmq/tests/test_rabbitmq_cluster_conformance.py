"""The shared conformance suite, unchanged, on three clustered RabbitMQ nodes
(scripts/services rabbitmq-cluster) named by one URL with every host,
$MQKIT_TEST_AMQP_CLUSTER_URL: groups get quorum queues there without being asked."""

from __future__ import annotations

import os

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance import MakeUrl, with_options

pytestmark = pytest.mark.cluster

AMQP_CLUSTER = os.environ.get(
    "MQKIT_TEST_AMQP_CLUSTER_URL",
    "amqp://guest:guest@127.0.0.1:5681,127.0.0.1:5682,127.0.0.1:5683/mqkit-test",
)


@pytest.fixture
def make_url() -> MakeUrl:
    return lambda options="": with_options(AMQP_CLUSTER, options)
