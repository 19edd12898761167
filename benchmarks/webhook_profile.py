"""Where the webhook dispatcher's CPU goes, next to the bare aiohttp loop's.

    python -m benchmarks.webhook_profile --messages 5000 --concurrency 64

Runs the dispatcher (memory broker) and the bare loop of benchmarks/webhooks.py once each
against the same bare endpoint, and prints: CPU per delivery of this process
(`time.process_time()`, which the endpoint's own process does not add to), then, under
cProfile (which slows both), the difference per delivery by where the time was spent: each
of mqkit's modules, aiohttp, asyncio, and C builtins. The numbers in benchmarks/README.md's
webhook section come from this script.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Column, Table

from benchmarks.webhook_clients import aiohttp_rate, target
from benchmarks.webhooks import dispatcher_rate


def _where(filename: str) -> str:
    """A profile entry's owner: an mqkit module, a library, or the C builtins."""
    if filename == "~" or filename.startswith("<"):
        return "C builtins"
    path = Path(filename)
    parts = path.parts
    if "mqkit" in parts:
        return "mqkit." + ".".join(parts[parts.index("mqkit") + 1 :]).removesuffix(".py")
    for library in ("aiohttp", "asyncio", "yarl", "multidict", "sqlalchemy", "aiosqlite"):
        if library in parts:
            return library
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    return f"stdlib {path.stem}"


async def _profiled(run: Callable[[], Awaitable[float]]) -> tuple[float, float, dict[str, float]]:
    """(deliveries/s, CPU seconds, tottime by owner) of one run."""
    profile = cProfile.Profile()
    cpu = time.process_time()
    profile.enable()
    rate = await run()
    profile.disable()
    cpu = time.process_time() - cpu
    by_owner: dict[str, float] = defaultdict(float)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, tottime, _, _) in stats.items():
        by_owner[_where(filename)] += tottime
    return rate, cpu, by_owner


async def _cpu(run: Callable[[], Awaitable[float]]) -> tuple[float, float]:
    cpu = time.process_time()
    rate = await run()
    return rate, time.process_time() - cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    n = args.messages
    workdir = Path(tempfile.mkdtemp(prefix="mqkit-bench-profile-"))
    console = Console()
    with target() as url:

        async def ours() -> float:
            rate, _ = await dispatcher_rate("memory://", url, n, args.concurrency, workdir)
            return rate

        def bare() -> Awaitable[float]:
            return aiohttp_rate(url, n, args.concurrency)

        (our_rate, our_cpu), (bare_rate, bare_cpu) = await _cpu(ours), await _cpu(bare)
        console.print(
            f"CPU per delivery: dispatcher {our_cpu / n * 1000:.3f} ms ({our_rate:,.0f}/s), "
            f"bare loop {bare_cpu / n * 1000:.3f} ms ({bare_rate:,.0f}/s)"
        )
        _, _, ours_by = await _profiled(ours)
        _, _, bare_by = await _profiled(bare)
    table = Table(
        Column("where (cProfile tottime)", no_wrap=True),
        "dispatcher ms/delivery",
        "bare ms/delivery",
        "diff",
    )
    rows = sorted(set(ours_by) | set(bare_by), key=lambda k: bare_by.get(k, 0) - ours_by.get(k, 0))
    for owner in rows:
        o, b = ours_by.get(owner, 0) / n * 1000, bare_by.get(owner, 0) / n * 1000
        if max(o, b) >= 0.005:
            table.add_row(owner, f"{o:.3f}", f"{b:.3f}", f"{o - b:+.3f}")
    console.print(table)


if __name__ == "__main__":
    asyncio.run(main())
