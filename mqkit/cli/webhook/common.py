"""What the webhook commands share: the --db option and the webhook database, one-line
validation errors, --since, the SSRF pre-check."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mqkit.cli.common import (
    UserError,
    pick_url,
    run,
    store_failure,
)
from mqkit.cli.loops import Loop
from mqkit.urls import parse_duration

if TYPE_CHECKING:
    from pydantic import ValidationError

    from mqkit.webhooks.attempts import AttemptLog
    from mqkit.webhooks.endpoints import EndpointRegistry

T = TypeVar("T")


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="MQKIT_WEBHOOK_DB",
        help="Endpoints and attempt log: sqlite:/// or postgresql:// URL. Env: "
        "MQKIT_WEBHOOK_DB. Default: webhooks.db next to the embedded broker's file.",
    ),
]
EndpointArg = Annotated[str, typer.Argument(help="The endpoint id (ep_...).")]
AllowOption = Annotated[
    list[str] | None,
    typer.Option("--allow", help="A network (CIDR) the SSRF guard lets through; repeat."),
]
TopicOption = Annotated[
    list[str] | None,
    typer.Option("--topic", "-t", help="A topic or pattern (orders.*); repeat for more."),
]


def on_db(
    ctx: typer.Context,
    db: str | None,
    action: Callable[[EndpointRegistry, AttemptLog], Awaitable[T]],
    broker_url: str | None = None,
    loop: Loop = Loop.asyncio,
) -> T:
    """Open the registry and the log, run `action`, close; database failures become one
    line naming the database. Without --db it sits next to the broker's file in use."""
    from mqkit.webhooks.defaults import database_url, webhook_database

    url = database_url(db, pick_url(ctx, broker_url))

    async def go() -> T:
        try:
            async with webhook_database(url) as (registry, log):
                return await action(registry, log)
        except Exception as exc:
            error = store_failure("webhook database", url, exc)
            if error is None:
                raise
            raise error from None

    return run(go(), loop)


def valid(build: Callable[[], T]) -> T:
    """Pydantic's and the secret's validation errors, as one line."""
    from pydantic import ValidationError

    try:
        return build()
    except ValidationError as exc:
        raise invalid(exc) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None


def parse_since(text: str) -> float:
    """'2h' (ago), an ISO date/time, or epoch seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        return time.time() - parse_duration(text, name="--since")
    except Exception:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UserError(
            f"--since: cannot read {text!r}: use a duration ago (2h), an ISO time or epoch"
        ) from None


def check_address(url: str, allow: list[str] | None) -> None:
    """Refuse what the dispatcher's guard would refuse forever; warn of what it would
    refuse today."""
    from mqkit.webhooks.ssrf import SsrfGuard

    guard = valid(lambda: SsrfGuard(allow or []))
    warning = run(guard.precheck(url))
    if warning:
        print(f"mqkit: warning: {warning}", file=sys.stderr)


async def valid_async(pending: Awaitable[T]) -> T:
    from pydantic import ValidationError

    try:
        return await pending
    except ValidationError as exc:
        raise invalid(exc) from None


def invalid(exc: ValidationError) -> UserError:
    """The first validation error, as `field: message`."""
    first = exc.errors()[0]
    return UserError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
