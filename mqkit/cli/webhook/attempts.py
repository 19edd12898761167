"""`mqkit webhook attempts` and `replay`: what an endpoint got, and sending it again."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mqkit.cli.common import (
    UrlOption,
    connect,
    pick_url,
    table_console,
)
from mqkit.cli.webhook.common import (
    DbOption,
    on_db,
    parse_since,
)

if TYPE_CHECKING:
    from mqkit.webhooks.attempts import AttemptLog
    from mqkit.webhooks.endpoints import EndpointRegistry

T = TypeVar("T")


def attempts(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Option("--endpoint", "-e", help="The endpoint id.")],
    since: Annotated[str, typer.Option("--since", help="2h, an ISO time or epoch.")] = "7d",
    message: Annotated[str | None, typer.Option("--message", help="One message id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    db: DbOption = None,
) -> None:
    """The newest delivery attempts to an endpoint: status, latency, error."""
    start = parse_since(since)

    async def go(registry: EndpointRegistry, log: AttemptLog) -> list[Any]:
        await registry.get(endpoint)  # a clear error for an unknown id
        return await log.attempts(endpoint, since=start, message_id=message, limit=limit)

    found = on_db(ctx, db, go)
    if as_json:
        for a in found:
            print(json.dumps(a.row()))
        return
    from rich.table import Column, Table

    table = Table("at", "attempt", "status", "ms", "outcome", "error")
    table.columns.insert(1, Column("message", no_wrap=True))
    for a in found:
        table.add_row(
            datetime.fromtimestamp(a.at).isoformat(timespec="seconds"), a.message_id,
            str(a.attempt), str(a.status or ""), f"{a.latency_ms:.0f}", a.outcome, a.error or "",
        )  # fmt: skip
    table_console().print(table)


def replay(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Option("--endpoint", "-e", help="The endpoint id.")],
    since: Annotated[str, typer.Option("--since", help="2h, an ISO time or epoch.")],
    everything: Annotated[
        bool, typer.Option("--all", help="Also messages the endpoint got.")
    ] = False,
    url: UrlOption = None,
    db: DbOption = None,
) -> None:
    """Send an endpoint again what it did not get since a time; a dispatcher delivers it."""
    from mqkit.webhooks.replay import replay as replay_messages

    start = parse_since(since)

    async def go(registry: EndpointRegistry, log: AttemptLog) -> int:
        await registry.get(endpoint)
        async with connect(pick_url(ctx, url)) as broker:
            return await replay_messages(
                broker, log, endpoint, since=start, include_delivered=everything
            )

    print(f"queued {on_db(ctx, db, go, url)} message(s) for {endpoint}")


# -- dispatch --------------------------------------------------------------------------------
