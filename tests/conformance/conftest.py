"""The conformance fixtures for this repository's suites: `make_url` for each selected
backend (tests/support/conformance.py), and the shipped fixtures that follow from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqkit.testing.conformance.fixtures import MakeUrl, broker, topic, url
from tests.support.conformance import Target, selected

__all__ = ["broker", "topic", "url"]  # registered as fixtures by being here


@pytest.fixture(params=selected(), ids=lambda t: t.name)
def target(request: pytest.FixtureRequest) -> Target:
    t: Target = request.param
    return t


@pytest.fixture
def make_url(target: Target, tmp_path: Path) -> MakeUrl:
    """make_url() -> a URL for this test's backend; make_url('lease=1s') adds options."""

    def make(options: str = "") -> str:
        return target.make_url(tmp_path, options)

    return make
