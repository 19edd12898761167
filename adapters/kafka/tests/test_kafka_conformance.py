"""The shared conformance suite on Kafka, on the server at $MQKIT_TEST_KAFKA_URL
(scripts/services starts one in KRaft mode)."""

from __future__ import annotations

import os

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance import MakeUrl, with_options

KAFKA = os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")


@pytest.fixture
def make_url() -> MakeUrl:
    return lambda options="": with_options(KAFKA, options)
