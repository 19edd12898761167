"""The webhook defaults a program gets as well as the CLI: where the webhook database lives
when told nothing, how a source's secrets are found in the environment, and which store keeps
seen webhook-ids.

    async with webhook_database() as (registry, attempts):   # webhooks.db beside the broker's
        dispatcher = Dispatcher(broker, registry, attempts)
    Source("stripe", secrets_from_env("stripe"), "payments")  # $MQKIT_WEBHOOK_SECRET_STRIPE
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator

from mqkit.idempotency.store import IdempotencyStore
from mqkit.paths import data_dir
from mqkit.webhooks.attempts import AttemptLog
from mqkit.webhooks.endpoints import EndpointRegistry
from mqkit.webhooks.signing import Secret

SECRET_ENV_PREFIX = "MQKIT_WEBHOOK_SECRET_"
DEDUP_PREFIX = "mqkit:webhook-ids:"


def default_database(broker_url: str | None = None) -> str:
    """webhooks.db next to the sqlite file of the broker in use (`broker_url`, else
    $MQKIT_URL, else the embedded default), or in mqkit's data directory for other brokers."""
    from mqkit.backends.sqlite import database_path

    url = broker_url or os.environ.get("MQKIT_URL") or ""
    folder = database_path(url).parent if url.startswith("sqlite:") else data_dir()
    return f"sqlite:///{folder.absolute() / 'webhooks.db'}"


def database_url(db: str | None = None, broker_url: str | None = None) -> str:
    """`db`, else $MQKIT_WEBHOOK_DB, else the default; a sqlite file's folder is made."""
    url = db or os.environ.get("MQKIT_WEBHOOK_DB") or default_database(broker_url)
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(url[len("sqlite:///") :])), exist_ok=True)
    return url


@contextlib.asynccontextmanager
async def webhook_database(
    db: str | None = None, broker_url: str | None = None
) -> AsyncIterator[tuple[EndpointRegistry, AttemptLog]]:
    """The endpoint registry and the attempt log on one engine (see database_url), closed
    (the log flushed) on the way out."""
    from mqkit.sql import engine_for

    engine = engine_for(database_url(db, broker_url), wal=True)
    registry, log = EndpointRegistry(engine=engine), AttemptLog(engine=engine)
    try:
        yield registry, log
    finally:
        try:
            await log.close()
        finally:
            await engine.dispose()


def secret_env(source: str) -> str:
    """The variable holding a source's secrets: MQKIT_WEBHOOK_SECRET_<NAME>, the name upper
    case with anything but letters and digits as `_`."""
    return SECRET_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", source).upper()


def secrets_from_env(source: str) -> list[Secret]:
    """A source's secrets (comma-separated whsec_..., several during a rotation) from
    secret_env(source); a ValueError naming the variable when none is set."""
    env = secret_env(source)
    texts = [t.strip() for t in os.environ.get(env, "").split(",") if t.strip()]
    if not texts:
        raise ValueError(f"set its secret(s) in ${env}")
    return [Secret(t) for t in texts]


def dedup_store(where: str) -> IdempotencyStore:
    """Where a receiver keeps seen webhook-ids across processes: a store URL found by its
    scheme (redis://, postgresql://...) or a sqlite file path."""
    if "://" in where:
        from mqkit.registry import IDEMPOTENCY_STORES, plugin

        store_class = plugin(IDEMPOTENCY_STORES, where, "dedup store")
        store: IdempotencyStore = store_class(where, prefix=DEDUP_PREFIX)
        return store
    from mqkit.idempotency.sqlite import SqliteStore

    return SqliteStore(where)
