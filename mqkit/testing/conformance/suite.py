"""The suite as `python -m mqkit.testing.conformance URL` runs it: every case, on the URL in
$MQKIT_CONFORMANCE_URL."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

import pytest

from mqkit.testing.conformance import *  # noqa: F403
from mqkit.testing.conformance.fixtures import MakeUrl, with_options


@pytest.fixture
def make_url() -> MakeUrl:
    given = os.environ["MQKIT_CONFORMANCE_URL"]
    parts = urlsplit(given)
    if parts.scheme == "memory" and not (parts.netloc or parts.path.strip("/")):
        given = f"memory://conformance-{uuid.uuid4().hex}" + (
            f"?{parts.query}" if parts.query else ""
        )

    def make(options: str = "") -> str:
        return with_options(given, options)

    return make
