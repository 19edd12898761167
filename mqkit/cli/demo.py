"""`mqkit demo` and `mqkit demo peak-shaving`: parse the options, run the demo from
mqkit.demos (imported when asked for: the demos are not the CLI's code)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from mqkit.cli.common import UrlOption, UserError, pick_url, run


def demo(
    ctx: typer.Context,
    orders: Annotated[int, typer.Option(min=1, help="How many orders to publish.")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, help="Handlers running at once.")] = 8,
    url: UrlOption = None,
) -> None:
    """Publish orders, process them with a worker (one retried, one dead-lettered), live.
    `mqkit demo peak-shaving` shows a burst drained at a rate limit."""
    if ctx.invoked_subcommand is not None:
        return
    if orders < 10:
        raise UserError("--orders must be at least 10")
    from mqkit.demos.orders import orders_demo

    _run_demo(orders_demo(pick_url(ctx, url), orders, concurrency))


def peak_shaving(
    ctx: typer.Context,
    rate: Annotated[str, typer.Option(help="The subscriber's limit, e.g. 200/s.")] = "200/s",
    factor: Annotated[int, typer.Option(min=1, help="The burst, as a multiple of the rate.")] = 10,
    chart: Annotated[Path, typer.Option(help="Where to write the PNG chart.")] = Path(
        "peak-shaving.png"
    ),
    url: UrlOption = None,
) -> None:
    """A burst of --factor times --rate, shaved: live view, then a PNG chart."""
    from mqkit.ratelimit import Rate

    try:
        limit = Rate.parse(rate)
    except Exception as exc:
        raise UserError(f"--rate: {exc}") from None
    if factor < 2:
        raise UserError("--factor must be at least 2")
    if limit.per_second < 4 or limit.per_second > 5000:
        raise UserError("--rate must be between 4/s and 5000/s for this demo")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError('the chart needs matplotlib: pip install "mqkit[charts]"') from None
    if not chart.parent.is_dir():
        raise UserError(f"--chart: no directory {chart.parent}")
    from mqkit.demos.peak_shaving import peak_shaving_demo

    _run_demo(peak_shaving_demo(pick_url(ctx, url), limit, factor, chart))


def _run_demo(demo_run: Coroutine[Any, Any, None]) -> None:
    try:
        run(demo_run)
    except TimeoutError as exc:
        raise UserError(str(exc) or "the demo did not finish in time") from None
