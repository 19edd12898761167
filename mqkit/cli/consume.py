"""`mqkit consume`: print messages of a topic, acking each once it is written out."""

from __future__ import annotations

import base64
import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from mqkit.cli.common import UrlOption, UserError, connect, pick_url, run

if TYPE_CHECKING:
    from mqkit.broker import Delivery


class Output(StrEnum):
    json = "json"
    raw = "raw"


def as_json(delivery: Delivery) -> str:
    m = delivery.message
    record: dict[str, object] = {
        "id": m.id,
        "topic": m.topic,
        "key": m.key,
        "headers": dict(m.headers),
        "content_type": m.content_type,
        "timestamp": m.timestamp,
        "attempt": m.attempt,
    }
    try:
        record["body"] = m.body.decode()
    except UnicodeDecodeError:
        record["body"] = base64.b64encode(m.body).decode()
        record["body_encoding"] = "base64"
    return json.dumps(record, ensure_ascii=False)


def consume(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic to read.")],
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", help="Consumer group (default: a private one)."),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="Stop after N messages.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", "-t", min=0, help="Stop when no message came for S seconds."),
    ] = None,
    from_beginning: Annotated[
        bool,
        typer.Option("--from-beginning", help="A new group starts at the oldest message."),
    ] = False,
    output: Annotated[Output, typer.Option("--output", "-o", help="json or raw.")] = Output.json,
    url: UrlOption = None,
) -> None:
    """Print messages as they arrive (one JSON object per line by default)."""
    if count is not None and count < 1:
        raise UserError("--count must be at least 1")
    run(_consume(pick_url(ctx, url), topic, group, count, timeout, from_beginning, output))


async def _consume(
    url: str | None,
    topic: str,
    group: str | None,
    count: int | None,
    timeout: float | None,
    from_beginning: bool,
    output: Output,
) -> None:
    import asyncio

    out = sys.stdout.buffer
    seen = 0
    async with connect(url) as broker:
        subscription = await broker.subscribe(
            topic, group=group, start="earliest" if from_beginning else "latest"
        )
        async with subscription:
            while count is None or seen < count:
                try:
                    delivery = await asyncio.wait_for(anext(subscription), timeout)
                except (TimeoutError, StopAsyncIteration):
                    break
                if output is Output.json:
                    out.write(as_json(delivery).encode() + b"\n")
                else:
                    out.write(delivery.message.body + b"\n")
                try:
                    out.flush()
                except BrokenPipeError:
                    break  # the reader went away: this one stays unacked, for redelivery
                await delivery.ack()
                seen += 1
