"""How long an `mqkit` command takes to start, against `python -c "import pydantic"` (which
any pydantic-based CLI pays first) and a bare interpreter, timed in the same run.

    .venv/bin/python -m benchmarks.startup [--repeat 7]

Each command runs in a fresh interpreter, as the console script runs it; the best of
`--repeat` runs is reported, since on a loaded machine every other figure is noise on top.
"""

from __future__ import annotations

import argparse
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


def best(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=False)
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
