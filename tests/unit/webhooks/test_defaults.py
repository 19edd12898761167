"""The webhook defaults a program gets without the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqkit.idempotency.sqlite import SqliteStore
from mqkit.webhooks.defaults import (
    database_url,
    dedup_store,
    default_database,
    secret_env,
    secrets_from_env,
    webhook_database,
)
from mqkit.webhooks.endpoints import Endpoint
from mqkit.webhooks.signing import Secret


def test_the_database_sits_beside_the_sqlite_broker_or_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MQKIT_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_database(f"sqlite:///{tmp_path}/q/broker.db") == (
        f"sqlite:///{tmp_path}/q/webhooks.db"
    )
    assert default_database("redis://localhost") == f"sqlite:///{tmp_path}/data/mqkit/webhooks.db"
    monkeypatch.setenv("MQKIT_URL", f"sqlite:///{tmp_path}/env/b.db")
    assert default_database() == f"sqlite:///{tmp_path}/env/webhooks.db"
    monkeypatch.setenv("MQKIT_WEBHOOK_DB", "postgresql://db/hooks")
    assert database_url() == "postgresql://db/hooks"
    assert database_url("sqlite:///given.db") == "sqlite:///given.db"


async def test_webhook_database_opens_registry_and_log_on_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new/folder/webhooks.db"
    async with webhook_database(url) as (registry, _):
        added = await registry.add(Endpoint(url="https://example.com/h", topics=["t"]))
    async with webhook_database(url) as (registry, _):
        assert [e.id for e in await registry.list()] == [added.id]


def test_secrets_come_from_the_sources_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert secret_env("stripe-live.eu") == "MQKIT_WEBHOOK_SECRET_STRIPE_LIVE_EU"
    with pytest.raises(ValueError, match=r"\$MQKIT_WEBHOOK_SECRET_STRIPE"):
        secrets_from_env("stripe")
    one, two = Secret.generate(), Secret.generate()
    monkeypatch.setenv("MQKIT_WEBHOOK_SECRET_STRIPE", f" {one.text}, {two.text} ,")
    assert [s.text for s in secrets_from_env("stripe")] == [one.text, two.text]


async def test_dedup_store_is_a_file_path_or_a_store_url(tmp_path: Path) -> None:
    store = dedup_store(str(tmp_path / "seen.db"))
    assert isinstance(store, SqliteStore)
    await store.close()
    from mqkit_redis.idempotency import RedisStore

    redis_store = dedup_store("redis://127.0.0.1:1/0")  # made, not connected
    assert isinstance(redis_store, RedisStore)
    await redis_store.close()
