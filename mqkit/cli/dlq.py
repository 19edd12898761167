"""`mqkit dlq list|show|replay|purge`: look at what failed and put it back (see mqkit.dlq)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mqkit.cli.common import UrlOption, UserError, age, connect, pick_url, run, table_console

if TYPE_CHECKING:
    from mqkit.dlq import DeadLetter, DeadLetters

T = TypeVar("T")

dlq_app = typer.Typer(
    help="Dead-letter queues: list, show, replay and purge what failed.",
    no_args_is_help=True,
)

Topic = Annotated[str, typer.Argument(help="The original topic (its DLQ is TOPIC.dlq).")]
GroupOption = Annotated[
    str | None, typer.Option("--group", "-g", help="Only what this consumer group gave up on.")
]
IdsOption = Annotated[
    list[str] | None, typer.Option("--id", help="Only this message id (repeatable).")
]
IdleOption = Annotated[
    float,
    typer.Option("--wait", min=0, help="Stop reading the DLQ when nothing came for S seconds."),
]


def _on_dlq(
    ctx: typer.Context,
    url: str | None,
    topic: str,
    wait: float,
    action: Callable[[DeadLetters], Awaitable[T]],
) -> T:
    """Connect, run `action` on TOPIC's dead-letter queue, close; user errors in one line."""

    async def go() -> T:
        from mqkit.dlq import DeadLetters

        async with connect(pick_url(ctx, url)) as broker:
            return await action(DeadLetters(broker, topic, idle=wait))

    return run(go())


def _record(dead: DeadLetter) -> dict[str, object]:
    m = dead.message
    record: dict[str, object] = {
        "id": dead.id,
        "topic": dead.original_topic,
        "group": dead.group,
        "key": dead.key,
        "attempts": dead.attempts,
        "error_type": dead.error_type,
        "error": dead.error,
        "first_failed_at": dead.first_failed_at,
        "last_failed_at": dead.last_failed_at,
        "headers": dict(m.headers),
        "content_type": m.content_type,
    }
    try:
        record["body"] = m.body.decode()
    except UnicodeDecodeError:  # binary: exact bytes, as `mqkit consume` prints them
        record["body"] = base64.b64encode(m.body).decode()
        record["body_encoding"] = "base64"
    return record


@dlq_app.command("list")
def list_command(
    ctx: typer.Context,
    topic: Topic,
    group: GroupOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most N.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    wait: IdleOption = 1.5,
    url: UrlOption = None,
) -> None:
    """A table of dead letters: id, group, attempts, error, age."""
    if limit < 1:
        raise UserError("--limit must be at least 1")

    found = _on_dlq(ctx, url, topic, wait, lambda dlq: dlq.list(group=group, limit=limit))
    if as_json:
        for dead in found:
            print(json.dumps(_record(dead), ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title=f"{topic}.dlq: {len(found)} dead letter(s)")
    table.add_column("id", no_wrap=True)
    for column in ("group", "attempts", "error", "age"):
        table.add_column(column, overflow="fold")
    now = time.time()
    for dead in found:
        table.add_row(dead.id, dead.group, str(dead.attempts), dead.error[:80], age(dead.age(now)))
    table_console().print(table)


@dlq_app.command("show")
def show_command(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID", help="The message id.")],
    topic: Annotated[str, typer.Option("--topic", "-t", help="The original topic.")],
    group: GroupOption = None,
    wait: IdleOption = 1.5,
    url: UrlOption = None,
) -> None:
    """One dead letter in full, as JSON: headers, error, failure times and body."""

    dead = _on_dlq(ctx, url, topic, wait, lambda dlq: dlq.get(message_id, group=group))
    if dead is None:
        raise UserError(f"no dead letter with id {message_id} in {topic}.dlq")
    print(json.dumps(_record(dead), ensure_ascii=False, indent=2))


@dlq_app.command("replay")
def replay_command(
    ctx: typer.Context,
    topic: Topic,
    group: GroupOption = None,
    ids: IdsOption = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter (of --group).")] = False,
    wait: IdleOption = 1.5,
    url: UrlOption = None,
) -> None:
    """Publish dead letters back to their topic (same id, attempts from 1), and remove them.

    Each goes to the group that gave up on it: mqkit apps in other groups skip it."""
    if not ids and not all_:
        raise UserError("say which: --id ID (repeatable) or --all")
    if ids and all_:
        raise UserError("--id and --all exclude each other")

    replayed = _on_dlq(ctx, url, topic, wait, lambda dlq: dlq.replay(group=group, ids=ids))
    missing = set(ids or ()) - {d.id for d in replayed}
    print(f"replayed {len(replayed)} message(s) to {topic}")
    if missing:
        raise UserError(f"not found in {topic}.dlq: {', '.join(sorted(missing))}")


@dlq_app.command("purge")
def purge_command(
    ctx: typer.Context,
    topic: Topic,
    group: GroupOption = None,
    ids: IdsOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: IdleOption = 1.5,
    url: UrlOption = None,
) -> None:
    """Delete dead letters for good (all, those of --group, or --id ones)."""
    what = (
        f"{len(ids)} message(s)"
        if ids
        else f"every dead letter of group {group}"
        if group
        else "every dead letter"
    )
    if not yes and not typer.confirm(f"Delete {what} from {topic}.dlq?", default=False):
        raise UserError("nothing deleted")

    purged = _on_dlq(ctx, url, topic, wait, lambda dlq: dlq.purge(group=group, ids=ids))
    print(f"purged {len(purged)} message(s) from {topic}.dlq")
