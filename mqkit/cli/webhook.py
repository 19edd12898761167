"""`mqkit webhook ...`: endpoints, the dispatcher, its attempt log and replays, the receiver.

Endpoints and attempts live in the webhook database (`--db`, $MQKIT_WEBHOOK_DB; by default a
sqlite file next to the embedded broker's). Messages go through the broker (`--url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import uvicorn
from rich.table import Column, Table

from mqkit.backends.sqlite import database_path, default_path
from mqkit.cli.common import (
    UrlOption,
    UserError,
    age,
    pick_url,
    run,
    stop_on_signals,
    store_failure,
    table_console,
)
from mqkit.registry import connect
from mqkit.urls import mask, parse_duration, parse_size

if TYPE_CHECKING:
    from pydantic import ValidationError

    from mqkit.webhooks.attempts import AttemptLog
    from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry

T = TypeVar("T")

webhook_app = typer.Typer(
    help="Webhooks: endpoints, the signed fan-out (dispatch), attempts, replay, the receiver.",
    no_args_is_help=True,
)
endpoint_app = typer.Typer(help="Subscribed HTTP endpoints.", no_args_is_help=True)
webhook_app.add_typer(endpoint_app, name="endpoint")


def default_db(broker_url: str | None = None) -> str:
    """webhooks.db next to the sqlite file of the broker in use (`broker_url`, else
    $MQKIT_URL, else the embedded default), or next to the embedded default's for others."""
    url = broker_url or os.environ.get("MQKIT_URL") or ""
    folder = database_path(url).parent if url.startswith("sqlite:") else default_path().parent
    return f"sqlite:///{folder.absolute() / 'webhooks.db'}"


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


def _database(db: str | None, broker_url: str | None) -> str:
    url = db or default_db(broker_url)
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(url[len("sqlite:///") :])), exist_ok=True)
    return url


def _on_db(
    ctx: typer.Context,
    db: str | None,
    action: Callable[[EndpointRegistry, AttemptLog], Awaitable[T]],
    broker_url: str | None = None,
) -> T:
    """Open the registry and the log, run `action`, close; database failures become one
    line naming the database. Without --db it sits next to the broker's file in use."""
    from mqkit.sql import engine_for
    from mqkit.webhooks.attempts import AttemptLog
    from mqkit.webhooks.endpoints import EndpointRegistry

    url = _database(db, pick_url(ctx, broker_url))

    async def go() -> T:
        engine = engine_for(url, wal=True)
        registry, log = EndpointRegistry(engine=engine), AttemptLog(engine=engine)
        try:
            return await action(registry, log)
        except Exception as exc:
            error = store_failure("webhook database", url, exc)
            if error is None:
                raise
            raise error from None
        finally:
            await log.close()
            await engine.dispose()

    return run(go())


def _valid(build: Callable[[], T]) -> T:
    """Pydantic's and the secret's validation errors, as one line."""
    from pydantic import ValidationError

    try:
        return build()
    except ValidationError as exc:
        raise _invalid(exc) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _since(text: str) -> float:
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


def _check_address(url: str, allow: list[str] | None) -> None:
    """Refuse what the dispatcher's guard would refuse forever; warn of what it would
    refuse today."""
    from mqkit.webhooks.ssrf import SsrfGuard

    guard = _valid(lambda: SsrfGuard(allow or []))
    warning = run(guard.precheck(url))
    if warning:
        print(f"mqkit: warning: {warning}", file=sys.stderr)


# -- endpoints -------------------------------------------------------------------------------


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
    endpoint = _valid(lambda: Endpoint(**fields))
    _check_address(endpoint.url, allow)
    _on_db(ctx, db, lambda r, _: r.add(endpoint))
    print(f"{endpoint.id} {endpoint.secrets[0][0]}")


@endpoint_app.command("list")
def endpoint_list(
    ctx: typer.Context,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Every endpoint, and whether it is enabled (and why not)."""
    endpoints = _on_db(ctx, db, lambda r, _: r.list())
    if as_json:
        for e in endpoints:
            print(json.dumps(_summary(e)))
        return
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
    found = _on_db(ctx, db, lambda r, _: r.get(endpoint))
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
        _check_address(url, allow)
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
        return await _valid_async(registry.update(endpoint, **changes))

    _on_db(ctx, db, go)
    print(f"updated {endpoint}")


async def _valid_async(pending: Awaitable[T]) -> T:
    from pydantic import ValidationError

    try:
        return await pending
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> UserError:
    """The first validation error, as `field: message`."""
    first = exc.errors()[0]
    return UserError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


@endpoint_app.command("disable")
def endpoint_disable(
    ctx: typer.Context,
    endpoint: EndpointArg,
    reason: Annotated[str, typer.Option("--reason", help="Shown in `endpoint list`.")] = "by hand",
    db: DbOption = None,
) -> None:
    """Stop delivering to an endpoint (retries due meanwhile are logged, and replayable)."""
    _on_db(ctx, db, lambda r, _: r.set_enabled(endpoint, False, reason))
    print(f"disabled {endpoint}")


@endpoint_app.command("enable")
def endpoint_enable(ctx: typer.Context, endpoint: EndpointArg, db: DbOption = None) -> None:
    """Deliver to an endpoint again (use `webhook replay` for what it missed)."""
    _on_db(ctx, db, lambda r, _: r.set_enabled(endpoint, True))
    print(f"enabled {endpoint}")


@endpoint_app.command("remove")
def endpoint_remove(ctx: typer.Context, endpoint: EndpointArg, db: DbOption = None) -> None:
    """Delete an endpoint."""
    _on_db(ctx, db, lambda r, _: r.remove(endpoint))
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

    new = _valid(lambda: Secret(secret)) if secret else Secret.generate()
    seconds = _valid(lambda: parse_duration(overlap, name="--overlap"))
    _on_db(ctx, db, lambda r, _: r.rotate_secret(endpoint, new, overlap=seconds))
    print(f"{endpoint} {new.text}")


# -- attempts and replay ---------------------------------------------------------------------


@webhook_app.command()
def attempts(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Option("--endpoint", "-e", help="The endpoint id.")],
    since: Annotated[str, typer.Option("--since", help="2h, an ISO time or epoch.")] = "7d",
    message: Annotated[str | None, typer.Option("--message", help="One message id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    db: DbOption = None,
) -> None:
    """The newest delivery attempts to an endpoint: status, latency, error."""
    start = _since(since)

    async def go(registry: EndpointRegistry, log: AttemptLog) -> list[Any]:
        await registry.get(endpoint)  # a clear error for an unknown id
        return await log.attempts(endpoint, since=start, message_id=message, limit=limit)

    found = _on_db(ctx, db, go)
    if as_json:
        for a in found:
            print(json.dumps(a.row()))
        return
    table = Table("at", "attempt", "status", "ms", "outcome", "error")
    table.columns.insert(1, Column("message", no_wrap=True))
    for a in found:
        table.add_row(
            datetime.fromtimestamp(a.at).isoformat(timespec="seconds"), a.message_id,
            str(a.attempt), str(a.status or ""), f"{a.latency_ms:.0f}", a.outcome, a.error or "",
        )  # fmt: skip
    table_console().print(table)


@webhook_app.command()
def replay(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Option("--endpoint", "-e", help="The endpoint id.")],
    since: Annotated[str, typer.Option("--since", help="2h, an ISO time or epoch.")],
    everything: Annotated[
        bool, typer.Option("--all", help="Also messages the endpoint got.")
    ] = False,
    url: UrlOption = None,
    db: DbOption = None,
) -> None:
    """Send an endpoint again what it did not get since a time; a dispatcher delivers it."""
    from mqkit.webhooks.replay import replay as replay_messages

    start = _since(since)

    async def go(registry: EndpointRegistry, log: AttemptLog) -> int:
        await registry.get(endpoint)
        async with connect(pick_url(ctx, url)) as broker:
            return await replay_messages(
                broker, log, endpoint, since=start, include_delivered=everything
            )

    print(f"queued {_on_db(ctx, db, go, url)} message(s) for {endpoint}")


# -- dispatch --------------------------------------------------------------------------------


@webhook_app.command()
def dispatch(
    ctx: typer.Context,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="Topics to consume (default: those endpoints name)."),
    ] = None,
    group: Annotated[str, typer.Option("--group", help="Consumer group.")] = "mqkit-webhooks",
    timeout: Annotated[str, typer.Option("--timeout", help="Per attempt.")] = "15s",
    schedule: Annotated[
        str | None,
        typer.Option("--schedule", help="Waits before each attempt: 0,5s,5m,30m,2h,5h,10h,10h."),
    ] = None,
    disable_after: Annotated[
        str, typer.Option("--disable-after", help="Failing this long without a success.")
    ] = "5d",
    allow: AllowOption = None,
    in_flight: Annotated[int, typer.Option("--in-flight", min=1)] = 512,
    url: UrlOption = None,
    db: DbOption = None,
) -> None:
    """POST the topics' messages to their endpoints, signed, with retries, until stopped."""
    from mqkit.webhooks.client import WebhookClient
    from mqkit.webhooks.dispatcher import Dispatcher
    from mqkit.webhooks.schedule import Schedule
    from mqkit.webhooks.ssrf import SsrfGuard

    plan = _valid(lambda: Schedule.parse(schedule)) if schedule else Schedule()
    guard = _valid(lambda: SsrfGuard(allow or []))
    client = WebhookClient(guard, timeout=_valid(lambda: parse_duration(timeout, name="--timeout")))
    patience = _valid(lambda: parse_duration(disable_after, name="--disable-after"))

    async def go(registry: EndpointRegistry, log: AttemptLog) -> Dispatcher:
        async with connect(pick_url(ctx, url)) as broker:
            dispatcher = Dispatcher(
                broker, registry, log, topics=topic, group=group, client=client,
                schedule=plan, disable_after=patience, in_flight=in_flight,
            )  # fmt: skip
            async with dispatcher:
                if not dispatcher.source_topics():
                    raise UserError("no topics to dispatch: add an endpoint or give --topic")
                stop = asyncio.Event()
                stop_on_signals(stop)
                await dispatcher.run(stop)
            return dispatcher

    stats = _on_db(ctx, db, go, url).stats
    print(
        f"delivered {stats.delivered}, failed attempts {stats.failed_attempts}, "
        f"exhausted {stats.exhausted}, disabled {len(stats.disabled)}"
    )


# -- serve -----------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn, with SIGTERM/Ctrl-C handled like every mqkit command: finish the requests in
    progress and exit 0 (uvicorn's own handling re-raises the signal after shutting down)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _watch(server: uvicorn.Server, stop: asyncio.Event, banner: str) -> None:
    """Say where it listens once it does; stop it when asked."""
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
        await asyncio.sleep(0.05)
    print(banner, flush=True)
    await stop.wait()
    server.should_exit = True


def _secret_env(name: str) -> str:
    return "MQKIT_WEBHOOK_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


@webhook_app.command()
def serve(
    ctx: typer.Context,
    source: Annotated[
        list[str],
        typer.Option(
            "--source",
            "-s",
            help="NAME=TOPIC: POST /NAME goes to TOPIC; its secrets (comma-separated, "
            "whsec_...) come from $MQKIT_WEBHOOK_SECRET_<NAME>.",
        ),
    ],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    tolerance: Annotated[str, typer.Option("--tolerance", help="Timestamp skew allowed.")] = "5m",
    max_body: Annotated[str, typer.Option("--max-body", help="Larger bodies get 413.")] = "1MiB",
    max_pending: Annotated[
        int, typer.Option("--max-pending", min=1, help="Requests in progress before 429.")
    ] = 1000,
    dedup: Annotated[
        str | None,
        typer.Option(
            "--dedup",
            help="Where seen webhook-ids are kept across processes: redis:// or a sqlite "
            "file path (default: this process's memory).",
        ),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Receive webhooks: verify, deduplicate, publish to the source's topic, then answer."""
    from mqkit.idempotency.store import IdempotencyStore
    from mqkit.webhooks.receiver import Receiver, Source
    from mqkit.webhooks.signing import Secret

    sources = []
    for spec in source:
        name, sep, topic = spec.partition("=")
        if not sep or not name or not topic:
            raise UserError(f"--source {spec!r}: expected NAME=TOPIC")
        env = _secret_env(name)
        texts = [t.strip() for t in os.environ.get(env, "").split(",") if t.strip()]
        if not texts:
            raise UserError(f"--source {name}: set its secret(s) in ${env}")
        keys = [_valid(lambda t=t: Secret(t)) for t in texts]  # type: ignore[misc]
        skew = _valid(lambda: parse_duration(tolerance, name="--tolerance"))
        sources.append(Source(name, keys, topic, tolerance=skew))
    limit = _valid(lambda: parse_size(max_body, name="--max-body"))
    store: IdempotencyStore | None = None
    if dedup and "://" in dedup:
        from mqkit.registry import IDEMPOTENCY_STORES, plugin

        store_class = plugin(IDEMPOTENCY_STORES, dedup, "dedup store")
        store = store_class(dedup, prefix="mqkit:webhook-ids:")
    elif dedup:
        from mqkit.idempotency.sqlite import SqliteStore

        store = SqliteStore(dedup)

    async def go() -> None:
        async with connect(pick_url(ctx, url)) as broker:
            receiver = Receiver(
                broker, sources, dedup=store, max_body=limit, max_pending=max_pending
            )
            config = uvicorn.Config(
                receiver, host=host, port=port, log_level="warning", access_log=False,
                lifespan="off",
            )  # fmt: skip
            server = _Server(config)
            stop = asyncio.Event()
            stop_on_signals(stop)
            banner = f"receiving on http://{host}:{port}/<source> -> {broker.safe_url}"
            watcher = asyncio.create_task(_watch(server, stop, banner))
            try:
                await server.serve()
            finally:
                watcher.cancel()
                if store is not None:
                    await store.close()
            if not server.started:
                raise UserError(f"cannot serve on {host}:{port} (see the line above)")

    run(go())
