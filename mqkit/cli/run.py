"""`mqkit run module:app`: run a worker app until SIGINT/SIGTERM, then shut down gracefully."""

from __future__ import annotations

import enum
import logging
import os
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from mqkit.cli import loops, metrics
from mqkit.cli.common import UrlOption, UserError, load_object, pick_url, run
from mqkit.cli.loops import Loop, LoopOption
from mqkit.cli.metrics import LOCAL, MetricsHostOption, MetricsPortOption

if TYPE_CHECKING:
    from mqkit.worker import App

log = logging.getLogger("mqkit")


class LogFormat(enum.StrEnum):
    text = "text"
    json = "json"


def load_app(target: str, *, traceback: bool = False) -> App:
    """The App named by `module:attribute` (attribute defaults to `app`), importable from
    the current directory, with something to run."""
    from mqkit.worker import App

    app = load_object(target, "app", traceback=traceback)
    if not isinstance(app, App):
        raise UserError(f"{target} is a {type(app).__name__}, not a mqkit.App")
    if not app.subscribers and not app.services:
        raise UserError(
            f"{target} has no subscribers or services: declare one with "
            "@app.subscriber(topic) (or app.add_service) before running it"
        )
    return app


async def serve(app: App, metrics_port: int | None = None, metrics_host: str = LOCAL) -> None:
    """Run `app`; the first signal stops it gracefully, a second one stops it at once."""
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    received = 0

    def on_signal(signum: int) -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info(
                "%s: stopping; finishing in-flight messages within %.0fs (again to quit now)",
                signal.Signals(signum).name,
                app.shutdown_timeout,
            )
            stop.set()
        elif main is not None:
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with metrics.endpoint(metrics_port, metrics_host, "mqkit-worker", app.ready):
            log.info(
                "mqkit: running %d subscriber(s) on %s; Ctrl-C to stop",
                len(app.subscribers),
                loops.name(loop),
            )
            await app.run(stop)
        log.info("mqkit: stopped")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_command(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="The app to run, as module:attribute.")],
    shutdown_timeout: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds in-flight handlers get to finish on shutdown."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            help="text for people; json: an object per line with the message id, topic, "
            "group, attempt and trace id."
        ),
    ] = LogFormat.text,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the whole traceback of an import error.")
    ] = False,
    url: UrlOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = LOCAL,
    loop: LoopOption = Loop.auto,
) -> None:
    """Run a worker app (`app = mqkit.App(...)` in module) until SIGINT or SIGTERM."""
    ours = logging.getLogger("mqkit")  # undo the CLI's quiet default: a worker logs fully
    ours.handlers.clear()
    ours.propagate = True
    ours.setLevel(logging.NOTSET)
    if log_format is LogFormat.json:
        from mqkit.logs import JsonFormatter

        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False)
    logging.basicConfig(
        force=True, level=log_level.upper(), format="%(message)s", handlers=[handler]
    )
    chosen = pick_url(ctx, url)
    if chosen:
        os.environ["MQKIT_URL"] = chosen  # for apps that leave the URL to the environment
    app = load_app(target, traceback=traceback)
    if shutdown_timeout is not None:
        app.shutdown_timeout = shutdown_timeout
    from asyncio import CancelledError

    try:
        run(serve(app, metrics_port, metrics_host), loop)
    except CancelledError:
        raise typer.Exit(130) from None
