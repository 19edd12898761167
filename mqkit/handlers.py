"""Turning a user's handler into something the consumer can call with a Context.

The handler's parameters say what it wants: a parameter annotated `Message` gets the raw
message, one annotated `Context` the context, and the one remaining parameter the body,
decoded and validated as its annotation (a pydantic model, dict, list, bytes, str, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin, get_type_hints

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

    # Plain functions handing back the handler's own coroutine: no frame of ours per
    # message. A body that does not decode raises DecodeError from the call itself, inside
    # the caller's `await call(ctx)`, as it would from within a coroutine.
    if [source for _, source, _ in sources] == ["body"]:  # the usual handler
        [(body, _, into)] = sources

        def call_with_body(ctx: Context) -> Awaitable[Any]:
            message = ctx.message
            return handler(**{body: codec.decode(message.body, message.content_type, into)})

        return call_with_body

    def call(ctx: Context) -> Awaitable[Any]:
        kwargs: dict[str, Any] = {}
        for name, source, annotation in sources:
            if source == "body":
                kwargs[name] = codec.decode(ctx.message.body, ctx.message.content_type, annotation)
            elif source == "message":
                kwargs[name] = ctx.message
            else:
                kwargs[name] = ctx
        return handler(**kwargs)

    return call


@dataclass(frozen=True, slots=True)
class BatchHandler:
    """A batch handler, compiled: `decode` makes one message's item (raising DecodeError),
    `call` hands the handler the items and, if it asks, their messages, in the same order."""

    decode: Callable[[Message], Any]
    call: Callable[[list[Any], list[Message]], Awaitable[Any]]


def compile_batch_handler(handler: Handler) -> BatchHandler:
    """`async def handle(orders: list[Order])`, and optionally `messages: list[Message]`:
    the one list parameter not of Messages gets the bodies, each decoded and validated as
    its item type; a handler taking only `list[Message]` gets the messages undecoded."""
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"handler {_name(handler)} must be an async function (async def)")
    hints = get_type_hints(handler)
    bodies: list[tuple[str, Any]] = []  # (parameter name, item type)
    raw: list[str] = []  # parameters that get the messages
    for param in inspect.signature(handler).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        item = _item_type(hints.get(param.name, list))
        if item is Message:
            raw.append(param.name)
        elif item is not None:
            bodies.append((param.name, item))
        elif param.default is param.empty:
            raise TypeError(
                f"batch handler {_name(handler)}: {param.name!r} must be annotated as a list "
                "(list[Order], or list[Message] for the messages themselves)"
            )
    if len(bodies) > 1 or (not bodies and not raw):
        raise TypeError(
            f"batch handler {_name(handler)} takes one list of bodies (list[Order]), and "
            "optionally one of their messages (list[Message])"
        )
    if bodies:
        body, item_type = bodies[0]
        decode: Callable[[Message], Any] = lambda m: codec.decode(  # noqa: E731
            m.body, m.content_type, item_type
        )
    else:
        body, decode = raw.pop(0), lambda m: m

    def call(items: list[Any], messages: list[Message]) -> Awaitable[Any]:
        return handler(**{body: items}, **dict.fromkeys(raw, messages))

    return BatchHandler(decode, call)


def _item_type(annotation: Any) -> Any:
    """The item type of a list annotation (`list[T]`, `Sequence[T]`), or None if not one."""
    if annotation in (list, Sequence):
        return Any
    origin = get_origin(annotation)
    if origin in (list, Sequence):
        args = get_args(annotation)
        return args[0] if args else Any
    return None


def _name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", repr(handler))


def default_group(handler: Handler) -> str:
    """A stable group name for a handler, so a restarted worker resumes where it left off."""
    return f"{handler.__module__}.{getattr(handler, '__qualname__', 'handler')}"
