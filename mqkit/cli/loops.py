"""`--loop auto|asyncio|uvloop`, which every long-running command takes (`mqkit run`,
`outbox relay`, `half checker`, `webhook dispatch|serve`). `auto`, the default, runs on
uvloop when it is installed (the `speed` extra) and on asyncio's own loop otherwise; the
rates of both are in benchmarks/README.md."""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from mqkit.errors import MqkitError

if TYPE_CHECKING:
    import asyncio

LoopFactory = Callable[[], "asyncio.AbstractEventLoop"]


class Loop(enum.StrEnum):
    auto = "auto"
    asyncio = "asyncio"
    uvloop = "uvloop"


LoopOption = Annotated[
    Loop,
    typer.Option("--loop", help="The event loop: uvloop when installed (auto), or the one named."),
]


def factory(loop: Loop) -> LoopFactory | None:
    """What makes the event loop `loop` names; None for asyncio's own."""
    if loop is Loop.asyncio:
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if loop is Loop.uvloop:
            raise MqkitError(
                "--loop uvloop: uvloop is not installed (pip install 'mqkit[speed]')"
            ) from None
        return None
    new_event_loop: LoopFactory = uvloop.new_event_loop
    return new_event_loop


def name(running: asyncio.AbstractEventLoop) -> str:
    """The running loop's kind, as `--loop` spells it."""
    return "uvloop" if type(running).__module__.startswith("uvloop") else "asyncio"
