"""`mqkit publish`: one message from the command line, or one per line from a file or stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mqkit.cli.common import UrlOption, UserError, connect, pick_url, run

if TYPE_CHECKING:
    from mqkit.message import Message

BATCH = 500
PROGRESS_FROM = 1000  # lines; smaller inputs finish before a bar is worth drawing


def parse_headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--header wants name=value, got {pair!r}")
        headers[name] = value
    return headers


def read_lines(source: str) -> list[bytes]:
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"no such file: {source}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {source}: {exc.strerror}") from exc
    return [line for line in data.splitlines() if line.strip()]


def check_json(bodies: list[bytes]) -> None:
    for number, body in enumerate(bodies, 1):
        try:
            json.loads(body)
        except ValueError as exc:
            where = f"line {number}" if len(bodies) > 1 else "body"
            raise UserError(f"{where} is not valid JSON: {exc}") from None


def publish(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic to publish to.")],
    body: Annotated[str | None, typer.Argument(help="Message body; - reads stdin.")] = None,
    key: Annotated[str | None, typer.Option("--key", "-k", help="Message key.")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="Header name=value; repeatable.")
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", help="Publish each non-empty line of FILE (- for stdin)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Bodies are JSON: check them, mark them JSON.")
    ] = False,
    delay: Annotated[
        float | None, typer.Option("--delay", min=0, help="Deliver after this many seconds.")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Publish a message, or one message per line of a file or stdin."""
    headers = parse_headers(header or [])
    if file is not None and body is not None:
        raise UserError("give either BODY or --file, not both")
    if file is None and body is None:
        raise UserError("nothing to publish: give BODY, --file FILE, or - to read stdin")
    source = file if file is not None else ("-" if body == "-" else None)
    bodies = read_lines(source) if source is not None else [(body or "").encode()]
    from mqkit import codec
    from mqkit.message import Message

    content_type = codec.JSON if as_json else codec.TEXT
    if as_json:
        check_json(bodies)
    messages = [
        Message(topic=topic, body=b, key=key, headers=headers, content_type=content_type)
        for b in bodies
    ]
    run(_publish(pick_url(ctx, url), topic, messages, delay, single=source is None))


async def _publish(
    url: str | None, topic: str, messages: list[Message], delay: float | None, *, single: bool
) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    err = Console(stderr=True)
    async with connect(url) as broker:
        if single:
            await broker.publish_batch(messages, delay=delay)
            print(messages[0].id)
            return
        with Progress(
            TextColumn("publishing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=len(messages) < PROGRESS_FROM,
            transient=True,
        ) as progress:
            task = progress.add_task("publish", total=len(messages))
            for i in range(0, len(messages), BATCH):
                chunk = messages[i : i + BATCH]
                await broker.publish_batch(chunk, delay=delay)
                progress.advance(task, len(chunk))
    err.print(f"published {len(messages)} message(s) to {topic}")
