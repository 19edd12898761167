"""The chaos tier: crashes, outages and rebalances on the real servers. Its helpers are in
tests.support.chaos; this prints every case's counts after the run."""

from __future__ import annotations

import logging

import pytest

from tests.support.chaos import REPORTS

# aiokafka logs every failed reconnect at ERROR, thousands a minute while a broker is down;
# pytest keeps each record, and in CI that held up the test's event loop for seconds (a 2 s
# publish timeout measured as 8 s). Its connection errors are not what these cases assert on.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("chaos counts")
        for line in REPORTS:
            terminalreporter.write_line(line)
