"""What every command shares: the --url option, and turning user errors into one line.

The command modules import little at the top: `mqkit --help` loads every one of them, and
what a command needs (a broker client, pydantic, rich's tables) is imported when it runs."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from mqkit.cli.loops import Loop, factory
from mqkit.errors import MqkitError
from mqkit.urls import mask

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

    from mqkit.broker import Broker

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


# Client libraries whose exceptions mean "the store failed", not "mqkit has a bug".
_STORE_CLIENTS = ("sqlalchemy", "psycopg", "aiosqlite", "redis")


def first_line(exc: BaseException) -> str:
    """The driver's own message (SQLAlchemy wraps it in `orig`), first line only."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def store_failure(what: str, url: str, exc: BaseException) -> UserError | None:
    """A database or store client's failure as one line naming `what` and the masked URL;
    None for anything else, which is a bug and keeps its traceback."""
    if isinstance(exc, OSError | ConnectionError):
        return UserError(f"{what} {mask(url)}: {exc}")
    if type(exc).__module__.split(".")[0] not in _STORE_CLIENTS:
        return None
    return UserError(f"{what} {mask(url)}: {first_line(exc)}")


def fail(message: str) -> NoReturn:
    print(f"mqkit: error: {message}", file=sys.stderr)
    raise typer.Exit(2)


def run(coro: Coroutine[Any, Any, T], loop: Loop = Loop.asyncio) -> T:
    """Run a command's coroutine on `loop`; its user errors become one line on stderr and
    exit 2."""
    import asyncio

    try:
        with asyncio.Runner(loop_factory=factory(loop)) as runner:
            return runner.run(coro)
    except MqkitError as exc:
        coro.close()  # not started if the loop could not be made: no "never awaited" warning
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


def load_object(target: str, default_attribute: str, *, traceback: bool = False) -> Any:
    """What `module:attribute` names, importable from the current directory. A module that
    raises while it is imported is a user error naming what was raised and where;
    `traceback=True` lets the exception through whole instead."""
    module_name, _, attribute = target.partition(":")
    attribute = attribute or default_attribute
    if not module_name:
        raise UserError(f"expected module:{default_attribute}, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        if traceback:
            raise
        if isinstance(exc, ModuleNotFoundError) and _is_or_contains(exc.name, module_name):
            raise UserError(f"cannot import {module_name!r}: no such module") from None
        raise UserError(
            f"importing {module_name!r} raised {type(exc).__name__}: {first_line(exc)} "
            f"at {_where(exc)} (--traceback shows the rest)"
        ) from None
    found = getattr(module, attribute, None)
    if found is None:
        raise UserError(f"module {module_name!r} has no attribute {attribute!r}")
    return found


def _is_or_contains(missing: str | None, module_name: str) -> bool:
    """Whether a missing module `missing` is `module_name` itself or one of its packages
    (not a module that `module_name`, which exists, imports)."""
    return bool(missing) and (missing == module_name or module_name.startswith(f"{missing}."))


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame the exception passed through, leaving out the
    import machinery's own (for a SyntaxError, the bad line)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    where = "?"
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith("<frozen"):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM and Ctrl-C set, so a long-running command finishes what it
    holds."""
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def connect(url: str | None) -> Broker:
    """mqkit.connect, imported on first use (it brings pydantic-settings along)."""
    from mqkit.registry import connect

    return connect(url)


def table_console() -> Console:
    """Where tables go: sized to the terminal, or, when stdout is a pipe or a file, as wide
    as the rows need, so that nothing a script reads (ids, URLs) is cut or folded."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=100_000)


def age(seconds: float) -> str:
    """A duration as people read it in a table: 42s, 3.5m, 2.0h, 1.5d."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
