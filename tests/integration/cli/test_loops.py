"""`--loop`: `mqkit run` runs its handlers on the loop asked for (uvloop when installed, by
default), says which in its start line, and stops cleanly on SIGTERM on either loop; asking
for uvloop where it is not installed is one line and exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import mqkit
from tests.support.services import ROOT

APP = """
import asyncio
import logging

import mqkit

app = mqkit.App()
log = logging.getLogger("app")

@app.subscriber("jobs", group="g")
async def handle(body: bytes) -> None:
    log.info("handled on %s", type(asyncio.get_running_loop()).__module__)
"""


async def _run_worker(tmp_path: Path, loop: str, *, hide_uvloop: bool = False) -> list[str]:
    """Start `mqkit run --loop loop`, have it handle one message, stop it with SIGTERM;
    the messages of its JSON log lines."""
    (tmp_path / "jobs.py").write_text(APP)
    path = [str(tmp_path), str(ROOT)]
    if hide_uvloop:  # an import of uvloop fails, as where the speed extra is not installed
        (tmp_path / "hidden" / "uvloop").mkdir(parents=True)
        (tmp_path / "hidden" / "uvloop" / "__init__.py").write_text("raise ImportError('hidden')")
        path.insert(0, str(tmp_path / "hidden"))
    url = f"sqlite:///{tmp_path / 'q.db'}"
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mqkit", "run", "jobs:app", "--url", url, "--loop", loop,
        "--log-format", "json",
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert worker.stderr is not None
    seen: list[str] = []
    try:
        async with mqkit.connect(url) as broker:
            await broker.publish("jobs", b"x")
            async with asyncio.timeout(60):
                while not any(m.startswith("handled on") for m in seen):
                    line = await worker.stderr.readline()
                    assert line, f"the worker ended; it wrote {seen}"
                    record: dict[str, Any] = json.loads(line)
                    seen.append(record["message"])
    finally:
        worker.terminate()
        rest = (await asyncio.wait_for(worker.communicate(), 30))[1].decode()
    assert worker.returncode == 0, rest
    return seen


@pytest.mark.parametrize(
    ("asked", "runs_on"), [("uvloop", "uvloop"), ("asyncio", "asyncio"), ("auto", "uvloop")]
)
async def test_run_handles_messages_on_the_loop_asked_for(
    tmp_path: Path, asked: str, runs_on: str
) -> None:
    seen = await _run_worker(tmp_path, asked)
    [started] = [m for m in seen if m.startswith("mqkit: running")]
    assert f" on {runs_on};" in started
    [handled] = [m for m in seen if m.startswith("handled on")]
    assert handled.split()[-1].startswith(runs_on), handled  # the loop's class's module


async def test_auto_runs_on_asyncio_where_uvloop_is_not_installed(tmp_path: Path) -> None:
    seen = await _run_worker(tmp_path, "auto", hide_uvloop=True)
    [started] = [m for m in seen if m.startswith("mqkit: running")]
    assert " on asyncio;" in started
    [handled] = [m for m in seen if m.startswith("handled on")]
    assert handled.split()[-1].startswith("asyncio"), handled


def test_asking_for_uvloop_where_it_is_not_installed_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(APP)
    (tmp_path / "uvloop").mkdir()
    (tmp_path / "uvloop" / "__init__.py").write_text("raise ImportError('hidden')")
    result = subprocess.run(
        [sys.executable, "-m", "mqkit", "run", "jobs:app", "--loop", "uvloop",
         "--url", f"sqlite:///{tmp_path / 'q.db'}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "uvloop is not installed" in err and "mqkit[speed]" in err, err
