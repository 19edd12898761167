"""How long an `mqkit` command takes to start, against `python -c "import pydantic"` (which
any pydantic-based CLI pays first) and a bare interpreter, timed in the same run.

    .venv/bin/python -m benchmarks.startup [--repeat 7]

Each command runs in a fresh interpreter, as the console script runs it; the best of
`--repeat` runs is reported, since on a loaded machine every other figure is noise on top.
Bytecode is cached as on a user's machine: PYTHONDONTWRITEBYTECODE (set in some shells and
CI images) is dropped and an untimed first run writes the cache, or every run would time
compiling pydantic's sources instead of importing them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

BASELINE = "import pydantic"
COMMANDS = [
    ["--version"],
    ["--help"],
    ["run", "--help"],
    ["webhook", "dispatch", "--help"],
]
CLI = "import sys; from mqkit.cli import main; sys.argv = ['mqkit', *sys.argv[1:]]; main()"


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def best(args: list[str], repeat: int) -> float:
    subprocess.run([sys.executable, *args], capture_output=True, check=False, env=ENV)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=False, env=ENV)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bare = best(["-c", "pass"], args.repeat)
    baseline = best(["-c", BASELINE], args.repeat)
    print(f"python -c pass: {bare * 1000:.0f} ms; python -c {BASELINE!r}: {baseline * 1000:.0f} ms")
    print("| command | start-up | / import pydantic |")
    print("|---|---|---|")
    for command in COMMANDS:
        took = best(["-c", CLI, *command], args.repeat)
        print(f"| mqkit {' '.join(command)} | {took * 1000:.0f} ms | {took / baseline:.2f}x |")


if __name__ == "__main__":
    main()
