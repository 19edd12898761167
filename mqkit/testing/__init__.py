"""Testing with mqkit: `TestApp` for your handlers (and the pytest fixtures of
mqkit.testing.pytest_plugin), the waiting helpers (mqkit.testing.waiting), and the
conformance suite every backend passes, shipped for third-party adapters
(mqkit.testing.conformance; `python -m mqkit.testing.conformance URL`). Needs pytest and
pytest-asyncio for the fixtures and the suite: pip install "mqkit[testing]"."""

from mqkit.testing.app import TestApp
from mqkit.testing.waiting import drain, nothing_arrives, receive, until, visible, wait_until

__all__ = ["TestApp", "drain", "nothing_arrives", "receive", "until", "visible", "wait_until"]
