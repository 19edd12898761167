"""The test watchdog (tests/support/watchdog.py): a test past its timeout ends the run with
what its tasks were awaiting and, last, the test's name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HANGS = """
import asyncio

async def forever() -> None:
    await asyncio.Event().wait()

async def test_hangs() -> None:
    await asyncio.gather(forever())
"""


def test_a_hung_test_is_named_last_with_what_it_awaited(tmp_path: Path) -> None:
    test = tmp_path / "test_hung.py"
    test.write_text(HANGS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.support.watchdog", "-c", "/dev/null",
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
         "-o", "timeout=2", "-o", "timeout_method=thread",
         "-p", "no:cacheprovider", str(test)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
    )  # fmt: skip
    output = run.stdout
    assert run.returncode == 1, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("+++ Timeout: ") and last.split()[2].endswith("::test_hangs"), output
    # What the test's task awaited, down to the Event: the frames the thread dump lacks.
    assert "in test_hangs" in output and "in forever" in output, output
    assert "locks.py" in output and "in wait" in output, output
