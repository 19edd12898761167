"""Peak shaving (`mqkit demo peak-shaving`): a burst absorbed by the broker and drained at
a steady rate.

Offers a quiet load (a quarter of the rate), then a burst of `--factor` times the rate for
a second, then the quiet load again, to a subscriber limited to `--rate`. A live view shows
offered and processed messages per second and the backlog; at the end a PNG chart of the
same (`--chart`) is written, and a summary says what the limit did.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from mqkit.broker import Broker
from mqkit.message import Message
from mqkit.ratelimit import Rate
from mqkit.registry import connect
from mqkit.worker import App

TICK = 0.05  # how often the offered load is published
SAMPLE = 0.5  # how often the view and the chart take a point
QUIET_BEFORE = 2.0
BURST = 1.0


@dataclass
class Sample:
    at: float
    offered_per_s: float
    processed_per_s: float
    backlog: int


@dataclass
class Run:
    rate: float
    samples: list[Sample] = field(default_factory=list)
    offered: int = 0
    processed_at: list[float] = field(default_factory=list)

    def max_per_second(self) -> int:
        """The most processed in any 1-second window after the first."""
        if not self.processed_at:
            return 0
        start = self.processed_at[0]
        counts: dict[int, int] = {}
        for t in self.processed_at:
            counts[int(t - start)] = counts.get(int(t - start), 0) + 1
        later = [n for second, n in counts.items() if second > 0]
        return max(later, default=0)


async def peak_shaving_demo(url: str | None, limit: Rate, factor: int, chart: Path) -> None:
    """The demo on `url` (None: the configured broker), its chart written to `chart` (needs
    matplotlib); TimeoutError if the backlog does not drain."""
    console = Console()
    topic = f"demo-{uuid.uuid4().hex[:8]}.jobs"
    broker = await connect(url).start()
    burst = max(1, int(limit.per_second / 10))
    record = Run(limit.per_second)
    app = App(broker=broker, shutdown_timeout=5.0)

    @app.subscriber(topic, group="demo-shaved", concurrency=16, rate=limit.per_second, burst=burst)
    async def work(message: Message) -> None:
        record.processed_at.append(time.monotonic())

    console.print(
        f"broker [bold]{broker.safe_url}[/]  topic [bold]{topic}[/]  limit {limit} "
        f"(burst {burst}); offering {limit.per_second / 4:g}/s, then {factor}x for "
        f"{BURST:g}s",
        soft_wrap=True,
    )
    try:
        async with app.running():
            with Live(_view(record, "quiet"), console=console, refresh_per_second=4) as live:
                await _offer_and_watch(broker, topic, limit.per_second, factor, record, live)
    finally:
        await broker.close()
    console.line()
    _draw(record, factor, chart)
    peak_backlog = max(s.backlog for s in record.samples)
    # Drained: back to what the quiet load alone leaves waiting between samples.
    drained = next(
        (
            s.at
            for s in record.samples
            if s.at > QUIET_BEFORE + BURST and s.backlog <= _quiet_backlog(limit.per_second)
        ),
        None,
    )
    console.print(
        f"[green]done[/]: offered {record.offered}, processed {len(record.processed_at)}, "
        f"lost 0; busiest second after the first: {record.max_per_second()} processed "
        f"(limit {limit}); backlog peaked at {peak_backlog} and drained "
        f"{f'at {drained:.1f}s' if drained is not None else 'not yet'}; nothing nacked",
        soft_wrap=True,
    )
    console.print(f"chart: {chart}", soft_wrap=True)


async def _offer_and_watch(
    broker: Broker, topic: str, rate: float, factor: int, record: Run, live: Live
) -> None:
    started = time.monotonic()
    owed = 0.0
    last_sample = started
    last_offered = last_processed = 0
    deadline = started + QUIET_BEFORE + BURST + 4 * factor + 30
    while True:
        now = time.monotonic()
        t = now - started
        bursting = QUIET_BEFORE <= t < QUIET_BEFORE + BURST
        owed += (rate * factor if bursting else rate / 4) * TICK
        batch = [Message.create(topic, b"job") for _ in range(int(owed))]
        owed -= len(batch)
        if batch:
            await broker.publish_batch(batch)
            record.offered += len(batch)
        if now - last_sample >= SAMPLE:
            span = now - last_sample
            processed = len(record.processed_at)
            record.samples.append(
                Sample(
                    t,
                    (record.offered - last_offered) / span,
                    (processed - last_processed) / span,
                    record.offered - processed,
                )
            )
            last_sample, last_offered, last_processed = now, record.offered, processed
            phase = "burst" if bursting else ("quiet" if t < QUIET_BEFORE else "draining")
            live.update(_view(record, phase))
            after_burst = t > QUIET_BEFORE + BURST + 1
            if after_burst and record.samples[-1].backlog <= _quiet_backlog(rate):
                break
        if now > deadline:
            raise TimeoutError("the backlog did not drain in time")
        await asyncio.sleep(max(0.0, TICK - (time.monotonic() - now)))
    # The last quiet messages, then stop: the backlog is what was offered, all processed.
    async with asyncio.timeout(30):
        while len(record.processed_at) < record.offered:  # noqa: ASYNC110 (a demo's poll)
            await asyncio.sleep(0.05)


def _quiet_backlog(rate: float) -> float:
    return rate / 4 * SAMPLE + 1


def _view(record: Run, phase: str) -> Table:
    last = record.samples[-1] if record.samples else Sample(0, 0, 0, 0)
    width = 40
    scale = max(record.rate * 2, max((s.offered_per_s for s in record.samples), default=1))
    table = Table(title=f"peak shaving: {phase}", show_header=False, expand=False)
    table.add_column(width=12)
    table.add_column(width=width + 12)

    def bar(value: float, top: float, colour: str) -> str:
        n = int(min(1.0, value / top) * width) if top else 0
        return f"[{colour}]{'█' * n}[/] {value:,.0f}"

    table.add_row("offered/s", bar(last.offered_per_s, scale, "yellow"))
    table.add_row("processed/s", bar(last.processed_per_s, scale, "green"))
    backlog_top = max((s.backlog for s in record.samples), default=1) or 1
    table.add_row("backlog", bar(last.backlog, backlog_top, "red"))
    table.add_row("limit", f"{record.rate:g}/s")
    return table


def _draw(record: Run, factor: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    at = [s.at for s in record.samples]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(at, [s.offered_per_s for s in record.samples], label="offered", color="orange")
    top.plot(at, [s.processed_per_s for s in record.samples], label="processed", color="green")
    top.axhline(record.rate, linestyle="--", color="grey", label=f"limit {record.rate:g}/s")
    top.set_ylabel("messages/s")
    top.set_title(f"Peak shaving: a {factor}x burst, drained at the limit")
    top.legend(loc="upper right")
    bottom.fill_between(at, [s.backlog for s in record.samples], color="tab:red", alpha=0.4)
    bottom.set_ylabel("backlog (in the broker)")
    bottom.set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
