"""`mqkit outbox init|relay|status`: the transactional outbox's table, relay and lag."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mqkit.cli import metrics
from mqkit.cli.common import (
    UrlOption,
    UserError,
    connect,
    first_line,
    pick_url,
    run,
    stop_on_signals,
    table_console,
)
from mqkit.cli.loops import Loop, LoopOption
from mqkit.cli.metrics import LOCAL, MetricsHostOption, MetricsPortOption
from mqkit.urls import mask

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

TABLE = "mqkit_outbox"

T = TypeVar("T")

outbox_app = typer.Typer(
    help="Transactional outbox: create its table, relay it to a broker, show its lag.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="MQKIT_DB",
        help="Database URL: postgresql://user:pass@host/db or sqlite:///path. Env: MQKIT_DB.",
    ),
]


def _sql() -> Any:
    """SQLAlchemy is the `sql` extra, imported only by the commands that need it (it takes
    most of a second, which every other command would pay)."""
    try:
        import sqlalchemy.exc
    except ModuleNotFoundError:
        raise UserError('the outbox needs the sql extra: pip install "mqkit[sql]"') from None
    return sqlalchemy.exc


def _on_db(
    db: str,
    action: Callable[[AsyncEngine], Awaitable[T]],
    *,
    create: bool = False,
    loop: Loop = Loop.asyncio,
) -> T:
    """Open the database, run `action`, close; database failures become one line naming it.
    Only `create` (init) may make a new SQLite file."""
    errors = _sql()
    from mqkit.sql import engine_for, missing_sqlite_file

    if not create and missing_sqlite_file(db):
        raise UserError(
            f"database {mask(db)}: no such file, so no outbox table ({TABLE}); "
            "run: mqkit outbox init --db URL"
        )

    async def go() -> T:
        engine = engine_for(db)
        try:
            return await action(engine)
        except errors.SQLAlchemyError as exc:
            reason = first_line(exc)
            if "no such table" in reason or "does not exist" in reason:
                reason = f"no outbox table ({TABLE}); run: mqkit outbox init --db URL"
            raise UserError(f"database {mask(db)}: {reason}") from None
        finally:
            await engine.dispose()

    return run(go(), loop)


@outbox_app.command()
def init(
    db: DbOption,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the DDL instead of running it (for migrations).")
    ] = False,
) -> None:
    """Create the outbox table (idempotent)."""
    _sql()
    from mqkit.outbox.schema import create_all, create_sql

    if sql:
        dialect = "postgresql" if db.startswith(("postgresql", "postgres:")) else "sqlite"
        print(create_sql(dialect), end="")
        return

    async def make(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(create_all)

    _on_db(db, make, create=True)
    print(f"outbox table {TABLE} ready in {mask(db)}")


@outbox_app.command()
def relay(
    ctx: typer.Context,
    db: DbOption,
    url: UrlOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 500,
    poll: Annotated[
        float, typer.Option("--poll", min=0.001, help="Seconds between polls when no NOTIFY comes.")
    ] = 1.0,
    retention: Annotated[
        float,
        typer.Option("--retention", min=0, help="Seconds to keep sent rows (0: delete them)."),
    ] = 0.0,
    once: Annotated[
        bool, typer.Option("--once", help="Relay what is waiting now, then exit.")
    ] = False,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = LOCAL,
    loop: LoopOption = Loop.auto,
) -> None:
    """Publish outbox rows to the broker until stopped (SIGTERM/Ctrl-C finish the batch)."""
    _sql()
    from mqkit.outbox.relay import OutboxRelay
    from mqkit.outbox.status import outbox_status

    async def go(engine: AsyncEngine) -> int:
        await outbox_status(engine)  # fails fast, in one line, on a missing table
        async with (
            connect(pick_url(ctx, url)) as broker,
            metrics.endpoint(
                metrics_port, metrics_host, "mqkit-outbox-relay", metrics.broker_ready(broker)
            ),
        ):
            relayer = OutboxRelay(
                engine, broker, batch_size=batch_size, poll_interval=poll, retention=retention
            )
            if once:
                return await relayer.drain()
            stop = stop_on_signals()
            await relayer.run(stop)
            return relayer.relayed

    n = _on_db(db, go, loop=loop)
    print(f"relayed {n} message{'s' if n != 1 else ''}")


@outbox_app.command()
def status(
    db: DbOption,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Unsent rows and the relay lag (age of the oldest unsent row)."""
    _sql()
    from mqkit.outbox.status import outbox_status

    state = _on_db(db, outbox_status)
    if as_json:
        print(json.dumps(state.as_dict()))
        return
    console = table_console()
    console.print(f"unsent: {state.unsent}")
    oldest = f" (oldest: {state.oldest_unsent_id})" if state.unsent else ""
    console.print(f"lag: {state.lag:.1f}s{oldest}")
    console.print(f"claimed by relays: {state.claimed}")
    console.print(f"sent rows kept: {state.sent_kept}")
    if state.failed:
        console.print(
            f"[red]failed: {state.failed}[/red] (rows the broker refused; see column error)"
        )
