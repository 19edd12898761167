"""`mqkit webhook endpoint ...`: subscribe, list, show, update, disable, enable, remove
endpoints and rotate their secrets."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mqkit.cli.common import (
    UserError,
    age,
    table_console,
)
from mqkit.cli.webhook.common import (
    AllowOption,
    DbOption,
    EndpointArg,
    TopicOption,
    check_address,
    on_db,
    valid,
    valid_async,
)
from mqkit.urls import mask, parse_duration

if TYPE_CHECKING:
    from mqkit.webhooks.attempts import AttemptLog
    from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry

T = TypeVar("T")


endpoint_app = typer.Typer(help="Subscribed HTTP endpoints.", no_args_is_help=True)


def _summary(e: Endpoint, *, show_secret: bool = False) -> dict[str, Any]:
    data = e.model_dump()
    if not show_secret:  # credentials in the URL are secrets too
        data["url"] = mask(e.url)
    now = time.time()
    live = [(text, exp) for text, exp in e.secrets if exp is None or exp > now]
    data["secrets"] = [
        {"secret": text if show_secret else text[:10] + "...", "expires_at": exp}
        for text, exp in live
    ]
    return data


@endpoint_app.command("add")
def endpoint_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where to POST: http(s)://...")],
    topic: TopicOption = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="whsec_... (default: a new random one).")
    ] = None,
    rate_limit: Annotated[
        float | None, typer.Option("--rate-limit", min=0, help="Deliveries per second at most.")
    ] = None,
    max_concurrency: Annotated[
        int, typer.Option("--max-concurrency", min=1, help="Attempts in flight at once.")
    ] = 16,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    allow: AllowOption = None,
    db: DbOption = None,
) -> None:
    """Subscribe an endpoint; prints its id and signing secret."""
    from mqkit.webhooks.endpoints import Endpoint

    if not topic:
        raise UserError("name at least one --topic")
    fields: dict[str, Any] = {
        "url": url,
        "topics": topic,
        "rate_limit": rate_limit,
        "max_concurrency": max_concurrency,
        "description": description,
    }
    if secret is not None:
        fields["secrets"] = [(secret, None)]
    endpoint = valid(lambda: Endpoint(**fields))
    check_address(endpoint.url, allow)
    on_db(ctx, db, lambda r, _: r.add(endpoint))
    print(f"{endpoint.id} {endpoint.secrets[0][0]}")


@endpoint_app.command("list")
def endpoint_list(
    ctx: typer.Context,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Every endpoint, and whether it is enabled (and why not)."""
    endpoints = on_db(ctx, db, lambda r, _: r.list())
    if as_json:
        for e in endpoints:
            print(json.dumps(_summary(e)))
        return
    from rich.table import Column, Table

    table = Table("url", "topics", "state", "failing for", "limits", "description")
    table.columns.insert(0, Column("id", no_wrap=True))  # ids are copied from here: never cut
    now = time.time()
    for e in endpoints:
        state = "enabled" if e.enabled else f"disabled: {e.disabled_reason or 'by hand'}"
        limits = f"{e.max_concurrency} at once" + (f", {e.rate_limit:g}/s" if e.rate_limit else "")
        failing = age(now - e.failing_since) if e.failing_since else ""
        table.add_row(e.id, mask(e.url), ", ".join(e.topics), state, failing, limits, e.description)
    console = table_console()
    console.print(table)
    console.print(f"{len(endpoints)} endpoint{'s' if len(endpoints) != 1 else ''}")


@endpoint_app.command("show")
def endpoint_show(
    ctx: typer.Context,
    endpoint: EndpointArg,
    show_secret: Annotated[
        bool, typer.Option("--show-secret", help="Print the secrets and the URL unmasked.")
    ] = False,
    db: DbOption = None,
) -> None:
    """One endpoint as JSON (secrets shortened, URL credentials masked, unless --show-secret)."""
    found = on_db(ctx, db, lambda r, _: r.get(endpoint))
    print(json.dumps(_summary(found, show_secret=show_secret), indent=2))


@endpoint_app.command("update")
def endpoint_update(
    ctx: typer.Context,
    endpoint: EndpointArg,
    url: Annotated[str | None, typer.Option("--url", help="A new URL.")] = None,
    topic: TopicOption = None,
    rate_limit: Annotated[
        float | None, typer.Option("--rate-limit", min=0, help="Deliveries per second (0: none).")
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option("--max-concurrency", min=1)] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    allow: AllowOption = None,
    db: DbOption = None,
) -> None:
    """Change an endpoint's URL, topics, limits or description."""
    changes: dict[str, Any] = {}
    if url is not None:
        check_address(url, allow)
        changes["url"] = url
    if topic:
        changes["topics"] = topic
    if rate_limit is not None:
        changes["rate_limit"] = rate_limit or None
    if max_concurrency is not None:
        changes["max_concurrency"] = max_concurrency
    if description is not None:
        changes["description"] = description
    if not changes:
        raise UserError("nothing to change: give --url, --topic, --rate-limit, ...")

    async def go(registry: EndpointRegistry, _: AttemptLog) -> Endpoint:
        return await valid_async(registry.update(endpoint, **changes))

    on_db(ctx, db, go)
    print(f"updated {endpoint}")


@endpoint_app.command("disable")
def endpoint_disable(
    ctx: typer.Context,
    endpoint: EndpointArg,
    reason: Annotated[str, typer.Option("--reason", help="Shown in `endpoint list`.")] = "by hand",
    db: DbOption = None,
) -> None:
    """Stop delivering to an endpoint (retries due meanwhile are logged, and replayable)."""
    on_db(ctx, db, lambda r, _: r.set_enabled(endpoint, False, reason))
    print(f"disabled {endpoint}")


@endpoint_app.command("enable")
def endpoint_enable(ctx: typer.Context, endpoint: EndpointArg, db: DbOption = None) -> None:
    """Deliver to an endpoint again (use `webhook replay` for what it missed)."""
    on_db(ctx, db, lambda r, _: r.set_enabled(endpoint, True))
    print(f"enabled {endpoint}")


@endpoint_app.command("remove")
def endpoint_remove(ctx: typer.Context, endpoint: EndpointArg, db: DbOption = None) -> None:
    """Delete an endpoint."""
    on_db(ctx, db, lambda r, _: r.remove(endpoint))
    print(f"removed {endpoint}")


@endpoint_app.command("rotate-secret")
def endpoint_rotate(
    ctx: typer.Context,
    endpoint: EndpointArg,
    secret: Annotated[str | None, typer.Option("--secret", help="The new whsec_...")] = None,
    overlap: Annotated[
        str, typer.Option("--overlap", help="How long the old secret keeps signing too.")
    ] = "24h",
    db: DbOption = None,
) -> None:
    """Sign with a new secret; the old one signs too until the overlap ends. Prints it."""
    from mqkit.webhooks.signing import Secret

    new = valid(lambda: Secret(secret)) if secret else Secret.generate()
    seconds = valid(lambda: parse_duration(overlap, name="--overlap"))
    on_db(ctx, db, lambda r, _: r.rotate_secret(endpoint, new, overlap=seconds))
    print(f"{endpoint} {new.text}")


# -- attempts and replay ---------------------------------------------------------------------
