"""The shipped conformance suite (mqkit.testing.conformance) on the core's backends, memory
and sqlite; each adapter runs it on its own server in adapters/<name>/tests."""

from __future__ import annotations

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from tests.support.conformance import Target, selected

CORE = ("memory", "sqlite")


@pytest.fixture(params=[t for t in selected() if t.name in CORE] or [None], ids=str)
def target(request: pytest.FixtureRequest) -> Target:
    if request.param is None:
        pytest.skip(f"MQKIT_TEST_BACKENDS names none of {CORE}")
    t: Target = request.param
    return t
