"""Turning a user's handler into something the consumer can call with a Context.

The handler's parameters say what it wants: a parameter annotated `Message` gets the raw
message, one annotated `Context` the context, and the one remaining parameter the body,
decoded and validated as its annotation (a pydantic model, dict, list, bytes, str, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, get_type_hints

from mqkit import codec
from mqkit.message import Message
from mqkit.middleware import CallNext, Context

Handler = Callable[..., Awaitable[Any]]


def compile_handler(handler: Handler) -> CallNext:
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"handler {_name(handler)} must be an async function (async def)")
    hints = get_type_hints(handler)
    params = list(inspect.signature(handler).parameters.values())
    sources: list[tuple[str, str, Any]] = []  # (parameter name, what it gets, annotation)
    body_seen = False
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        if annotation is Message:
            sources.append((param.name, "message", annotation))
        elif annotation is Context:
            sources.append((param.name, "context", annotation))
        elif not body_seen:
            body_seen = True
            sources.append((param.name, "body", annotation))
        elif param.default is param.empty:
            raise TypeError(
                f"handler {_name(handler)}: cannot tell what to pass as {param.name!r}; only "
                "one parameter receives the body, others must be annotated Message or Context"
            )

    async def call(ctx: Context) -> None:
        kwargs: dict[str, Any] = {}
        for name, source, annotation in sources:
            if source == "body":
                kwargs[name] = codec.decode(ctx.message.body, ctx.message.content_type, annotation)
            elif source == "message":
                kwargs[name] = ctx.message
            else:
                kwargs[name] = ctx
        await handler(**kwargs)

    return call


def _name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", repr(handler))


def default_group(handler: Handler) -> str:
    """A stable group name for a handler, so a restarted worker resumes where it left off."""
    return f"{handler.__module__}.{getattr(handler, '__qualname__', 'handler')}"
