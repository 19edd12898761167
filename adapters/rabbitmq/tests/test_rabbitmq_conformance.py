"""The shared conformance suite on RabbitMQ, with classic and with quorum (Raft-replicated)
queues, which differ where it matters here: delivery counts, redelivery order, TTL
dead-lettering for delays. On the server at $MQKIT_TEST_AMQP_URL (scripts/services)."""

from __future__ import annotations

import os

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance import MakeUrl, with_options

AMQP = os.environ.get("MQKIT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/mqkit-test")
VARIANTS = {"classic": "", "quorum": "queue_type=quorum"}


@pytest.fixture(params=sorted(VARIANTS))
def make_url(request: pytest.FixtureRequest) -> MakeUrl:
    queues = VARIANTS[request.param]

    def make(options: str = "") -> str:
        return with_options(AMQP, "&".join(o for o in (queues, options) if o))

    return make
