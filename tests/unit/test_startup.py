"""What a command loads before it runs: `mqkit --version` and `mqkit --help` answer without
the worker, pydantic, SQL, HTTP or rich's help, and `import mqkit` loads its names on first
use (benchmarks/startup.py measures the time this saves)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

import mqkit

HEAVY = (
    "pydantic",
    "pydantic_settings",
    "mqkit.worker",
    "sqlalchemy",
    "aiohttp",
    "uvicorn",
    "starlette",
    "opentelemetry",
    "rich.markdown",
    "asyncio",  # about 30 ms: only a command that runs needs a loop
)

# Runs the command in a fresh interpreter, as the console script does, and prints which of
# HEAVY it imported.
PROBE = """
import json, sys
from mqkit.cli import main
sys.argv = ["mqkit", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps([m for m in {heavy} if m in sys.modules]), file=sys.stderr)
"""


def loaded(*args: str) -> tuple[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    *_, last = done.stderr.strip().splitlines()
    return done.stdout, json.loads(last)


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_load_nothing_heavy(args: list[str]) -> None:
    out, heavy = loaded(*args)
    assert out.strip(), "the command printed nothing"
    assert heavy == []


def test_a_groups_help_loads_only_what_typer_needs() -> None:
    # typer itself reads a command's parameter types through pydantic; mqkit adds nothing.
    out, heavy = loaded("half", "--help")
    assert "check" in out
    assert heavy in ([], ["pydantic"])


def test_a_commands_help_still_lists_its_options() -> None:
    out, _ = loaded("run", "--help")
    assert "--shutdown-timeout" in out and "--loop" in out


def test_the_version_is_the_packages() -> None:
    out, _ = loaded("--version")
    assert out.strip() == f"mqkit {importlib.metadata.version('mqkit')}"
    assert mqkit.__version__ == importlib.metadata.version("mqkit")


def test_import_mqkit_loads_its_names_on_first_use() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mqkit; print('mqkit.worker' in sys.modules, 'pydantic' in sys.modules);"
            "mqkit.App; mqkit.outbox; print('mqkit.worker' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["False", "False", "True"]
    assert {"App", "connect", "outbox", "half"} <= set(dir(mqkit))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = mqkit.nothing  # type: ignore[attr-defined]
