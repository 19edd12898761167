"""What every command shares: the --url option, and turning user errors into one line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from mqkit.errors import MqkitError

T = TypeVar("T")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Broker URL. Default: $MQKIT_URL, else the embedded sqlite file.",
    ),
]


class UserError(MqkitError):
    """Something the person at the terminal can fix: reported in one line, exit code 2."""


def fail(message: str) -> NoReturn:
    print(f"mqkit: error: {message}", file=sys.stderr)
    raise typer.Exit(2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; its user errors become one line on stderr and exit 2."""
    try:
        return asyncio.run(coro)
    except MqkitError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def pick_url(ctx: typer.Context, url: str | None) -> str | None:
    """The command's --url, else the one given before the command (`mqkit --url U cmd`);
    None leaves the choice to MQKIT_URL and the default."""
    if url:
        return url
    root = ctx.find_root().obj
    return root.get("url") if isinstance(root, dict) else None
