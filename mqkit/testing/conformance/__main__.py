"""`python -m mqkit.testing.conformance URL [pytest options]`: the conformance suite on one
URL, from any directory; pytest's summary is printed and its exit status returned (0: green).

A URL with a namespace is shared by the cases (each uses its own topics); `memory://` gets a
fresh name per case, since a nameless one would be a new empty broker for each connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_URL_ENV = "MQKIT_CONFORMANCE_URL"
_USAGE = "usage: python -m mqkit.testing.conformance URL [pytest options]"


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(_USAGE, file=sys.stderr)
        return 2
    url, *pytest_args = argv
    _make_sqlite_folder(url)
    os.environ[_URL_ENV] = url
    suite = Path(__file__).with_name("suite.py")
    with tempfile.TemporaryDirectory(prefix="mqkit-conformance-") as scratch:
        # Its own rootdir and ini: the caller's directory and configuration play no part.
        ini = Path(scratch) / "pytest.ini"
        ini.write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        args = [
            str(suite),
            "-c",
            str(ini),
            "--rootdir",
            str(suite.parent),
            "-p",
            "no:cacheprovider",
        ]
        # In a process of its own: pytest imports the cases itself, so their asserts are
        # rewritten to show the values (this process imported them already to get here).
        command = [sys.executable, "-m", "pytest", *args, "-q", *pytest_args]
        return subprocess.run(command, check=False).returncode


def _make_sqlite_folder(url: str) -> None:
    """The suite writes a scratch database: its folder is made if missing (the broker itself
    never makes one, so that a mistyped path is an error and not a new empty queue)."""
    if not url.startswith("sqlite:"):
        return
    from mqkit.backends.sqlite import database_path

    folder = database_path(url).parent
    if not folder.exists():
        folder.mkdir(parents=True)
        print(f"mqkit conformance: made {folder}/ for {url}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
