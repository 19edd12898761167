"""`mqkit webhook dispatch`: the signed fan-out, until stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mqkit.cli import metrics
from mqkit.cli.common import (
    UrlOption,
    UserError,
    connect,
    pick_url,
    stop_on_signals,
)
from mqkit.cli.loops import Loop, LoopOption
from mqkit.cli.metrics import LOCAL, MetricsHostOption, MetricsPortOption
from mqkit.cli.webhook.common import (
    AllowOption,
    DbOption,
    on_db,
    valid,
)
from mqkit.urls import parse_duration

if TYPE_CHECKING:
    from mqkit.webhooks.attempts import AttemptLog
    from mqkit.webhooks.endpoints import EndpointRegistry

T = TypeVar("T")


def dispatch(
    ctx: typer.Context,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="Topics to consume (default: those endpoints name)."),
    ] = None,
    group: Annotated[str, typer.Option("--group", help="Consumer group.")] = "mqkit-webhooks",
    timeout: Annotated[str, typer.Option("--timeout", help="Per attempt.")] = "15s",
    schedule: Annotated[
        str | None,
        typer.Option("--schedule", help="Waits before each attempt: 0,5s,5m,30m,2h,5h,10h,10h."),
    ] = None,
    disable_after: Annotated[
        str, typer.Option("--disable-after", help="Failing this long without a success.")
    ] = "5d",
    allow: AllowOption = None,
    in_flight: Annotated[int, typer.Option("--in-flight", min=1)] = 512,
    url: UrlOption = None,
    db: DbOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = LOCAL,
    loop: LoopOption = Loop.auto,
) -> None:
    """POST the topics' messages to their endpoints, signed, with retries, until stopped."""
    from mqkit.webhooks.client import WebhookClient
    from mqkit.webhooks.dispatcher import Dispatcher
    from mqkit.webhooks.schedule import Schedule
    from mqkit.webhooks.ssrf import SsrfGuard

    plan = valid(lambda: Schedule.parse(schedule)) if schedule else Schedule()
    guard = valid(lambda: SsrfGuard(allow or []))
    client = WebhookClient(guard, timeout=valid(lambda: parse_duration(timeout, name="--timeout")))
    patience = valid(lambda: parse_duration(disable_after, name="--disable-after"))

    async def go(registry: EndpointRegistry, log: AttemptLog) -> Dispatcher:
        async with (
            connect(pick_url(ctx, url)) as broker,
            metrics.endpoint(
                metrics_port, metrics_host, "mqkit-webhook-dispatcher", metrics.broker_ready(broker)
            ),
        ):
            dispatcher = Dispatcher(
                broker, registry, log, topics=topic, group=group, client=client,
                schedule=plan, disable_after=patience, in_flight=in_flight,
            )  # fmt: skip
            async with dispatcher:
                if not dispatcher.source_topics():
                    raise UserError("no topics to dispatch: add an endpoint or give --topic")
                stop = stop_on_signals()
                await dispatcher.run(stop)
            return dispatcher

    stats = on_db(ctx, db, go, url, loop).stats
    print(
        f"delivered {stats.delivered}, failed attempts {stats.failed_attempts}, "
        f"exhausted {stats.exhausted}, disabled {len(stats.disabled)}"
    )


# -- serve -----------------------------------------------------------------------------------
