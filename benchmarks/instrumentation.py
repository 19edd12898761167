"""What mqkit's instrumentation costs: publish and App-consume rates with it off (OpenTelemetry
not even imported), with the API only (imported, no SDK installed: what a library user who
never configures OpenTelemetry gets), with the SDK on (a TracerProvider whose span
processor drops every span, and a MeterProvider whose reader is never collected: the cost
of making and recording, without an exporter's), and the same sampling 1 trace in 10.

    python -m benchmarks.instrumentation --url redis://127.0.0.1:6379/0 --repeat 5

Each mode runs in a fresh process (an import cannot be undone), the modes taking turns
(off, api, sdk, then sdk, api, off, ...) so that all see the same state of a noisy machine;
the median of `--repeat` runs per mode, and each row's ratio to the instrumentation-off one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile

from rich.console import Console
from rich.table import Table

MODES = ("off", "api", "sdk", "sampled")
ROWS = {"single": "publish, single awaited", "batched": "publish, batches of 500",
        "worker": "App subscriber draining a backlog, concurrency 8"}  # fmt: skip


def install(mode: str) -> None:
    if mode == "api":
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    elif mode in ("sdk", "sampled"):
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        # "sampled": what a busy service configures, 1 trace in 10 recorded (consumers
        # follow the publisher's decision, carried in traceparent).
        sampler = ParentBased(TraceIdRatioBased(0.1)) if mode == "sampled" else None
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(SpanProcessor())  # the base class: does nothing
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


async def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    from benchmarks.run import publish_batched, publish_single, worker

    single = await publish_single(url, args.single)
    batched, _ = await publish_batched(url, args.messages, 500)
    consumed = await worker(url, args.messages, 500, 8)
    return {"single": single, "batched": batched, "worker": consumed}


def one_run(url: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    """A child process of this module measuring `mode` once."""
    command = [sys.executable, "-m", "benchmarks.instrumentation", "--url", url, "--mode", mode,
               "--messages", str(args.messages), "--single", str(args.single)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, check=True, text=True)
    rates: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="broker URL (default: a fresh sqlite file per run)")
    parser.add_argument("--mode", choices=MODES, help="(internal) measure one mode, print JSON")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON too")
    args = parser.parse_args()
    if args.mode is not None:
        install(args.mode)
        rates = asyncio.run(measure(args.url, args))
        # "off" is an application that imports no OpenTelemetry; a broker client may still
        # (redis-py 8 does), which makes "off" the same as "api" there.
        rates["api_imported"] = float("opentelemetry.trace" in sys.modules)
        print(json.dumps(rates))
        return
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as workdir:
        for i in range(args.repeat):
            for mode in MODES if i % 2 == 0 else reversed(MODES):
                url = args.url or f"sqlite:///{os.path.join(workdir, f'{mode}-{i}.db')}"
                runs[mode].append(one_run(url, mode, args))
    medians = {m: {k: statistics.median(r[k] for r in runs[m]) for k in ROWS} for m in MODES}
    where = args.url or "sqlite"
    table = Table(title=f"instrumentation cost on {where} (median of {args.repeat})")
    columns = ("workload", "off", "API only", "ratio", "SDK", "ratio", "SDK, 10% sampled", "ratio")
    for column in columns:
        table.add_column(column, justify="left" if column == "workload" else "right")
    for key, name in ROWS.items():
        off, *others = (medians[m][key] for m in MODES)
        cells = [name, f"{off:,.0f}/s"]
        for rate in others:
            cells += [f"{rate:,.0f}/s", f"{rate / off:.3f}"]
        table.add_row(*cells)
    if runs["off"][0].get("api_imported"):
        print("note: the broker's client imports OpenTelemetry's API itself: off = API only here")
    Console(width=160).print(table)
    if args.json:
        print(json.dumps(medians))


if __name__ == "__main__":
    main()
