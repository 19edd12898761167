"""Idempotency stores and middleware: memory, sqlite, Redis and SQL (SQLite and PostgreSQL).

Redis and PostgreSQL are the servers `scripts/services up` starts (MQKIT_TEST_*_URL)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mqkit_redis.idempotency import RedisStore
from sqlalchemy import Column, MetaData, String, Table, func, insert, select

import mqkit
from mqkit.idempotency import Claim, IdempotencyStore, MemoryStore, SqliteStore, idempotent
from mqkit.idempotency.sql import SqlStore
from tests.support.services import CLUSTER_URLS, store_params

REDIS = os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get(
    "MQKIT_TEST_POSTGRES_URL", "postgresql://mqkit:mqkit@127.0.0.1:5432/mqkit"
)

STORES: dict[str, Callable[[Path], IdempotencyStore]] = {
    "memory": lambda tmp: MemoryStore(),
    "sqlite": lambda tmp: SqliteStore(tmp / "processed.db"),
    "redis": lambda tmp: RedisStore(REDIS, prefix=f"test:{uuid.uuid4().hex}:"),
    "redis-sentinel": lambda tmp: RedisStore(
        CLUSTER_URLS["redis-sentinel"], prefix=f"test:{uuid.uuid4().hex}:"
    ),
    "redis-cluster": lambda tmp: RedisStore(
        CLUSTER_URLS["redis-cluster"], prefix=f"test:{uuid.uuid4().hex}:"
    ),
    "sql-sqlite": lambda tmp: SqlStore(f"sqlite:///{tmp / 'sql.db'}"),
    "sql-postgresql": lambda tmp: SqlStore(POSTGRES),
}


@pytest.fixture(params=store_params(list(STORES)))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IdempotencyStore]:
    s = STORES[request.param](tmp_path)
    yield s
    await s.close()


def key() -> str:
    return f"g:{uuid.uuid4()}"


async def test_claim_complete_and_duplicate(store: IdempotencyStore) -> None:
    k = key()
    assert await store.claim(k, "a", 30) is Claim.NEW
    assert await store.claim(k, "b", 30) is Claim.BUSY
    await store.complete(k, "a", 30)
    assert await store.claim(k, "c", 30) is Claim.DONE


async def test_release_lets_another_claim_and_only_the_holder_releases(
    store: IdempotencyStore,
) -> None:
    k = key()
    assert await store.claim(k, "a", 30) is Claim.NEW
    await store.release(k, "someone-else")
    assert await store.claim(k, "b", 30) is Claim.BUSY
    await store.release(k, "a")
    assert await store.claim(k, "b", 30) is Claim.NEW


async def test_an_expired_claim_can_be_taken_over(store: IdempotencyStore) -> None:
    k = key()
    assert await store.claim(k, "dead-consumer", 0.2) is Claim.NEW
    await asyncio.sleep(0.4)
    assert await store.claim(k, "b", 30) is Claim.NEW
    await store.complete(k, "b", 0.3)
    assert await store.claim(k, "c", 30) is Claim.DONE
    await asyncio.sleep(0.5)
    assert await store.claim(k, "c", 30) is Claim.NEW  # the mark's ttl ran out


async def test_concurrent_claims_have_one_winner(store: IdempotencyStore) -> None:
    k = key()
    outcomes = await asyncio.gather(*(store.claim(k, f"t{i}", 30) for i in range(20)))
    assert outcomes.count(Claim.NEW) == 1
    assert outcomes.count(Claim.BUSY) == 19


async def test_middleware_runs_each_id_once_per_group(
    store: IdempotencyStore, tmp_path: Path
) -> None:
    calls: list[tuple[str, str]] = []
    app = mqkit.App(f"memory://{uuid.uuid4().hex}", middleware=[idempotent(store)])
    failed_once: set[str] = set()

    @app.subscriber("orders", group="billing", concurrency=4)
    async def bill(message: mqkit.Message) -> None:
        if message.body == b"flaky" and message.id not in failed_once:
            failed_once.add(message.id)
            raise RuntimeError("first try fails")  # released: the retry runs it
        calls.append(("billing", message.id))

    @app.subscriber("orders", group="shipping")
    async def ship(message: mqkit.Message) -> None:
        calls.append(("shipping", message.id))

    async with app.running():
        sent = [await app.publish("orders", b"x") for _ in range(5)]
        flaky = await app.publish("orders", b"flaky")
        for m in [*sent, flaky]:  # every message delivered a second time, same id
            await app.broker.publish_batch([m])
        async with asyncio.timeout(20):
            while sum(s.stats.handled + s.stats.duplicates for s in app.subscribers) < 24:
                await asyncio.sleep(0.02)
    ids = [m.id for m in [*sent, flaky]]
    assert sorted(calls) == sorted([("billing", i) for i in ids] + [("shipping", i) for i in ids])
    assert [s.stats.duplicates for s in app.subscribers] == [6, 6]


async def test_an_id_being_handled_elsewhere_is_retried_not_run_twice(
    store: IdempotencyStore,
) -> None:
    """Busy: another consumer holds the claim. The copy here is retried after busy_delay
    without running the handler; once the other finishes, it is acked as a duplicate."""
    calls: list[str] = []
    app = mqkit.App(
        f"memory://{uuid.uuid4().hex}",
        middleware=[idempotent(store, busy_delay=0.05)],
        retry=mqkit.RetryPolicy(max_attempts=1000),  # busy retries are attempts too
    )

    @app.subscriber("orders", group="billing")
    async def bill(message: mqkit.Message) -> None:
        calls.append(message.id)

    message = mqkit.Message.create("orders", b"x")
    claim_key = f"billing:{message.id}"
    assert await store.claim(claim_key, "the-other-consumer", 60) is Claim.NEW
    stats = app.subscribers[0].stats
    async with app.running():
        await app.broker.publish_batch([message])
        async with asyncio.timeout(20):
            while stats.retried < 3:  # asked again, and again, while the other holds it
                await asyncio.sleep(0.01)
        assert calls == []
        await store.complete(claim_key, "the-other-consumer", 60)
        async with asyncio.timeout(20):
            while stats.duplicates < 1:
                await asyncio.sleep(0.01)
    assert calls == [] and stats.handled == 0 and stats.dead_lettered == 0


async def _effects_table(store: SqlStore) -> Table:
    effects = Table(f"effects_{uuid.uuid4().hex[:8]}", MetaData(), Column("message_id", String(64)))
    async with store.engine.begin() as conn:
        await conn.run_sync(effects.metadata.create_all)
    return effects


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_transactional_marks_commit_with_the_effects(db: str, tmp_path: Path) -> None:
    store = SqlStore(POSTGRES if db == "postgresql" else f"sqlite:///{tmp_path / 'tx.db'}")
    effects = await _effects_table(store)
    app = mqkit.App(f"memory://{uuid.uuid4().hex}", retry=mqkit.RetryPolicy(base_delay=0.01))
    crash_after_write: set[str] = set()

    @app.subscriber("orders", group="billing", concurrency=4, middleware=[store.transactional()])
    async def bill(message: mqkit.Message, ctx: mqkit.Context) -> None:
        conn = store.connection(ctx)
        await conn.execute(insert(effects).values(message_id=message.id))
        if message.body == b"crash" and message.id not in crash_after_write:
            crash_after_write.add(message.id)
            raise RuntimeError("fails after writing")  # the write is rolled back

    async with app.running():
        sent = [await app.publish("orders", b"crash" if i % 3 == 0 else b"ok") for i in range(30)]
        await app.broker.publish_batch(sent)  # each one twice
        spec = app.subscribers[0]
        async with asyncio.timeout(20):
            while spec.stats.handled + spec.stats.duplicates < 60:
                await asyncio.sleep(0.02)
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(effects.c.message_id, func.count()).group_by(effects.c.message_id)
            )
        ).all()
    await store.close()
    assert {row[0]: row[1] for row in rows} == {m.id: 1 for m in sent}
    assert spec.stats.duplicates == 30


async def test_sql_store_connection_outside_the_middleware_says_so() -> None:
    ctx = mqkit.Context(message=mqkit.Message.create("t", b""), topic="t", group="g")
    with pytest.raises(RuntimeError, match="transactional"):
        SqlStore.connection(ctx)


async def test_redis_store_uses_server_expiry() -> None:
    store = RedisStore(REDIS, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        await store.claim("g:x", "a", 5)
        ttl = await store.client.pttl(store.prefix + "g:x")
        assert 4000 < ttl <= 5000
    finally:
        await store.close()
