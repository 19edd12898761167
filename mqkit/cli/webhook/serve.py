"""`mqkit webhook serve`: the verifying receiver behind uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mqkit.cli import metrics
from mqkit.cli.common import (
    UrlOption,
    UserError,
    connect,
    pick_url,
    run,
    stop_on_signals,
)
from mqkit.cli.loops import Loop, LoopOption
from mqkit.cli.metrics import LOCAL, MetricsHostOption, MetricsPortOption
from mqkit.cli.webhook.common import (
    valid,
)
from mqkit.urls import parse_duration, parse_size

if TYPE_CHECKING:
    pass

T = TypeVar("T")


def serve(
    ctx: typer.Context,
    source: Annotated[
        list[str],
        typer.Option(
            "--source",
            "-s",
            help="NAME=TOPIC: POST /NAME goes to TOPIC; its secrets (comma-separated, "
            "whsec_...) come from $MQKIT_WEBHOOK_SECRET_<NAME>.",
        ),
    ],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    tolerance: Annotated[str, typer.Option("--tolerance", help="Timestamp skew allowed.")] = "5m",
    max_body: Annotated[str, typer.Option("--max-body", help="Larger bodies get 413.")] = "1MiB",
    max_pending: Annotated[
        int, typer.Option("--max-pending", min=1, help="Requests in progress before 429.")
    ] = 1000,
    dedup: Annotated[
        str | None,
        typer.Option(
            "--dedup",
            help="Where seen webhook-ids are kept across processes: redis:// or a sqlite "
            "file path (default: this process's memory).",
        ),
    ] = None,
    url: UrlOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = LOCAL,
    loop: LoopOption = Loop.auto,
) -> None:
    """Receive webhooks: verify, deduplicate, publish to the source's topic, then answer."""
    from mqkit.idempotency.store import IdempotencyStore
    from mqkit.webhooks.defaults import dedup_store, secrets_from_env
    from mqkit.webhooks.receiver import Receiver, Source

    sources = []
    for spec in source:
        name, sep, topic = spec.partition("=")
        if not sep or not name or not topic:
            raise UserError(f"--source {spec!r}: expected NAME=TOPIC")
        try:
            keys = secrets_from_env(name)
        except ValueError as exc:  # none set, or one that is not a whsec_... secret
            raise UserError(f"--source {name}: {exc}") from None
        skew = valid(lambda: parse_duration(tolerance, name="--tolerance"))
        sources.append(Source(name, keys, topic, tolerance=skew))
    limit = valid(lambda: parse_size(max_body, name="--max-body"))
    store: IdempotencyStore | None = dedup_store(dedup) if dedup else None

    async def go() -> None:
        async with (
            connect(pick_url(ctx, url)) as broker,
            metrics.endpoint(
                metrics_port, metrics_host, "mqkit-webhook-receiver", metrics.broker_ready(broker)
            ),
        ):
            from mqkit import http_server

            receiver = Receiver(
                broker, sources, dedup=store, max_body=limit, max_pending=max_pending
            )
            stop = stop_on_signals()
            try:
                async with http_server.serving(receiver, host, port):
                    print(f"receiving on http://{host}:{port}/<source> -> {broker.safe_url}")
                    await stop.wait()
            finally:
                if store is not None:
                    await store.close()

    run(go(), loop)
