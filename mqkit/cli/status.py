"""`mqkit status [module:app] [--group topic:group ...] [--db URL] [--json] [--watch]`: how
far behind the consumer groups are (the app's subscriptions, or the groups named), their
dead letters, and with --db the outbox, half messages and webhook endpoints (mqkit.status).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import typer

from mqkit.cli.common import (
    UrlOption,
    UserError,
    age,
    connect,
    pick_url,
    run,
    store_failure,
    table_console,
)
from mqkit.urls import mask

if TYPE_CHECKING:
    from rich.console import Group
    from sqlalchemy.ext.asyncio import AsyncEngine

    from mqkit.status import Status


def status(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Argument(help="An app (module:attribute): its subscriptions are the groups."),
    ] = None,
    groups: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="A group to show, as topic:group (repeatable)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="MQKIT_DB",
            help="The application's database: its outbox, half messages, webhook endpoints.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the view live (Ctrl-C ends).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between --watch refreshes.")
    ] = 2.0,
    url: UrlOption = None,
) -> None:
    """Backlog, in flight, oldest age and dead letters per topic and group."""
    pairs = [_pair(g) for g in groups or []]
    chosen = pick_url(ctx, url)
    if target is not None:
        from mqkit.cli.run import load_app

        app = load_app(target)
        pairs += [(s.topic, s.group) for s in app.subscribers]
        chosen = app.url or chosen
    if not pairs:
        raise UserError("name the groups: an app (mqkit status module:app) or --group topic:group")
    run(_show(chosen, pairs, db, as_json=as_json, watch=watch, interval=interval))


def _pair(text: str) -> tuple[str, str]:
    topic, sep, group = text.rpartition(":")
    if not sep or not topic or not group:
        raise UserError(f"--group takes topic:group, not {text!r}")
    return topic, group


async def _show(
    url: str | None,
    pairs: list[tuple[str, str]],
    db: str | None,
    *,
    as_json: bool,
    watch: bool,
    interval: float,
) -> None:
    from mqkit.status import Status, database_status, group_status

    engine = _engine(db) if db else None
    try:
        async with connect(url) as broker:

            async def read() -> Status:
                found = await group_status(broker, pairs)
                if engine is None:
                    return Status(broker.safe_url, found)
                try:
                    outbox, half, webhooks = await database_status(engine)
                except Exception as exc:
                    error = store_failure("database", db or "", exc)
                    if error is None:
                        raise
                    raise error from None
                return Status(broker.safe_url, found, outbox, half, webhooks)

            if as_json and not watch:
                print(json.dumps((await read()).as_dict()))
            elif not watch:
                table_console().print(_render(await read()))
            else:
                await _watch(read, interval, as_json=as_json)
    finally:
        if engine is not None:
            await engine.dispose()


async def _watch(read: Callable[[], Awaitable[Status]], interval: float, *, as_json: bool) -> None:
    import asyncio

    if as_json:  # a line per refresh, for scripts that follow it
        while True:
            print(json.dumps((await read()).as_dict()), flush=True)
            await asyncio.sleep(interval)
    from rich.live import Live

    with Live(_render(await read()), console=table_console(), auto_refresh=False) as live:
        while True:
            await asyncio.sleep(interval)
            live.update(_render(await read()), refresh=True)


def _engine(db: str) -> AsyncEngine:
    try:
        from mqkit.sql import engine_for, missing_sqlite_file
    except ModuleNotFoundError:
        raise UserError('--db needs the sql extra: pip install "mqkit[sql]"') from None

    if missing_sqlite_file(db):
        raise UserError(f"database {mask(db)}: no such file")
    return engine_for(db)


def _render(status: Status) -> Group:
    from rich.console import Group
    from rich.table import Table

    now = time.time()
    groups = Table("topic", "group", "waiting", "in flight", "oldest", "dead letters",
                   title=f"consumer groups on {status.broker}", title_justify="left")  # fmt: skip
    for g in status.groups:
        lag = g.lag
        groups.add_row(
            lag.topic, lag.group, str(lag.waiting), _or_dash(lag.in_flight),
            "-" if lag.oldest_age is None else age(lag.oldest_age), str(g.dead_letters),
        )  # fmt: skip
    parts: list[Table] = [groups]
    if status.outbox is not None:
        o = status.outbox
        outbox = Table("unsent", "lag", "failed", "sent kept", title="outbox", title_justify="left")
        outbox.add_row(str(o.unsent), age(o.lag), str(o.failed), str(o.sent_kept))
        parts.append(outbox)
    if status.half is not None:
        half = Table("group", "pending", "oldest", title="half messages", title_justify="left")
        for h in status.half:
            half.add_row(h.group, str(h.pending), age(h.oldest_age))
        parts.append(half)
    if status.webhooks is not None:
        hooks = Table("endpoint", "url", "enabled", "failing for", "last success",
                      title="webhook endpoints", title_justify="left")  # fmt: skip
        for e in status.webhooks:
            hooks.add_row(
                e.id, e.url, "yes" if e.enabled else "no",
                "-" if e.failing_since is None else age(now - e.failing_since),
                "-" if e.last_success is None else f"{age(now - e.last_success)} ago",
            )  # fmt: skip
        parts.append(hooks)
    return Group(*parts)


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)
