"""Running the `mqkit` command as a user does: a separate process, its exit code and output."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.support.services import ROOT


def mqkit(
    *args: str,
    url: str | None = None,
    stdin: bytes | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    columns: int | None = None,
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    env.pop("MQKIT_URL", None)
    if url:
        env["MQKIT_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "mqkit", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def wait_for_group(url: str, topic: str, group: str, timeout: float = 60) -> None:
    """Until a consumer has subscribed `group` on the sqlite broker at `url` (its row in
    mq_groups is written when it subscribes)."""
    path = url.removeprefix("sqlite:///")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(path).exists():
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
                try:
                    row = db.execute(
                        "SELECT 1 FROM mq_groups WHERE topic = ? AND grp = ?", (topic, group)
                    ).fetchone()
                except sqlite3.OperationalError:  # the schema is not there yet
                    row = None
            if row:
                return
        time.sleep(0.05)
    raise AssertionError(f"no consumer subscribed {group!r} to {topic!r} in {timeout:g}s")
