"""`mqkit half list|checker`: prepared messages, and the check-back that resolves them."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mqkit.cli import metrics
from mqkit.cli.common import (
    UrlOption,
    UserError,
    age,
    connect,
    load_object,
    pick_url,
    run,
    stop_on_signals,
    store_failure,
    table_console,
)
from mqkit.cli.loops import Loop, LoopOption
from mqkit.cli.metrics import LOCAL, MetricsHostOption, MetricsPortOption
from mqkit.half.defaults import DEFAULT_INTERVAL, DEFAULT_MAX_CHECKS
from mqkit.urls import mask

if TYPE_CHECKING:
    from mqkit.half.checker import HalfChecker
    from mqkit.half.store import HalfRecord, HalfStore

T = TypeVar("T")

half_app = typer.Typer(
    help="Half messages: list the prepared ones, run the check-back.",
    no_args_is_help=True,
)

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="MQKIT_HALF_STORE",
        help="Where half messages wait: postgresql://, sqlite:/// or redis:// URL. "
        "Env: MQKIT_HALF_STORE.",
    ),
]
GroupOption = Annotated[str, typer.Option("--group", "-g", help="The producer group.")]


def _on_store(
    url: str, action: Callable[[HalfStore], Awaitable[T]], loop: Loop = Loop.asyncio
) -> T:
    """Open the store, run `action`, close; its failures become one line naming it."""

    if url.startswith("sqlite"):  # opening a missing file would leave an empty one
        from mqkit.sql import missing_sqlite_file

        if missing_sqlite_file(url):
            raise UserError(f"half-message store {mask(url)}: no such file")

    async def go() -> T:
        from mqkit.half.stores import store_for

        store = store_for(url)
        try:
            return await action(store)
        except Exception as exc:
            error = store_failure("half-message store", url, exc)
            if error is None:
                raise
            raise error from None
        finally:
            await store.close()

    return run(go(), loop)


def _record(r: HalfRecord) -> dict[str, object]:
    return {
        "id": r.message.id,
        "group": r.group,
        "topic": r.message.topic,
        "key": r.message.key,
        "state": r.state,
        "checks": r.checks,
        "age_seconds": round(time.time() - r.message.timestamp, 3),
        "next_check_at": r.check_at,
        "reason": r.reason,
    }


@half_app.command("list")
def list_(
    store: StoreOption,
    group: Annotated[str | None, typer.Option("--group", "-g", help="Only this group.")] = None,
    resolved: Annotated[
        bool, typer.Option("--all", help="Also committed, rolled back and dead-lettered ones.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Prepared messages with their age and check count."""
    records = _on_store(store, lambda s: s.records(group, resolved=resolved, limit=limit))
    if as_json:
        for r in records:
            print(json.dumps(_record(r)))
        return
    from rich.table import Table

    table = Table("id", "group", "topic", "state", "checks", "age")
    for r in records:
        table.add_row(
            r.message.id, r.group, r.message.topic, r.state, str(r.checks),
            age(time.time() - r.message.timestamp),
        )  # fmt: skip
    console = table_console()
    console.print(table)
    console.print(f"{len(records)} message{'s' if len(records) != 1 else ''}")


@half_app.command()
def checker(
    ctx: typer.Context,
    check: Annotated[
        str,
        typer.Argument(
            help="module:function, the group's check: (Message) -> Resolution (sync or async)."
        ),
    ],
    store: StoreOption,
    group: GroupOption = "default",
    url: UrlOption = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0, help="Seconds before asking again after UNKNOWN.")
    ] = DEFAULT_INTERVAL,
    max_checks: Annotated[
        int, typer.Option("--max-checks", min=1, help="Checks before the DLQ.")
    ] = DEFAULT_MAX_CHECKS,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = LOCAL,
    loop: LoopOption = Loop.auto,
) -> None:
    """Resolve the group's prepared messages whose producer went quiet, until stopped."""
    function = load_object(check, "check")
    if not callable(function):
        raise UserError(f"{check} is a {type(function).__name__}, not a function")

    async def go(half_store: HalfStore) -> HalfChecker:
        from mqkit.half.checker import HalfChecker

        async with (
            connect(pick_url(ctx, url)) as broker,
            metrics.endpoint(
                metrics_port, metrics_host, "mqkit-half-checker", metrics.broker_ready(broker)
            ),
        ):
            checker = HalfChecker(
                broker, half_store, function, group=group, interval=interval,
                max_checks=max_checks,
            )  # fmt: skip
            if once:
                await checker.check_once()
            else:
                stop = stop_on_signals()
                await checker.run(stop)
            return checker

    stats = _on_store(store, go, loop).stats
    print(
        f"committed {stats.committed}, rolled back {stats.rolled_back}, "
        f"unknown {stats.unknown}, dead-lettered {stats.dead_lettered}, "
        f"finished {stats.finished}"
    )
