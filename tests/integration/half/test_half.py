"""Half messages on every store (SQLite, PostgreSQL, Redis): prepare is invisible, commit
publishes once, rollback drops, check-back resolves, UNKNOWN ends in the DLQ, and checkers
side by side never publish a message twice."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mqkit_redis.half import RedisHalfStore

import mqkit
from mqkit.broker import Broker
from mqkit.half import (
    HalfChecker,
    HalfMessageError,
    HalfProducer,
    HalfStore,
    Resolution,
    store_for,
)
from mqkit.message import Message
from tests.support.services import CLUSTER_URLS, POSTGRES, store_params

REDIS = os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

STORES: dict[str, Callable[[Path], HalfStore]] = {
    "sqlite": lambda tmp: store_for(f"sqlite:///{tmp / 'half.db'}"),
    "postgresql": lambda tmp: store_for(POSTGRES),
    "redis": lambda tmp: RedisHalfStore(REDIS, prefix=f"test:{uuid.uuid4().hex}:"),
    "redis-sentinel": lambda tmp: RedisHalfStore(
        CLUSTER_URLS["redis-sentinel"], prefix=f"test:{uuid.uuid4().hex}:"
    ),
    "redis-cluster": lambda tmp: RedisHalfStore(
        CLUSTER_URLS["redis-cluster"], prefix=f"test:{uuid.uuid4().hex}:"
    ),
}


@pytest.fixture(params=store_params(list(STORES)))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HalfStore]:
    s = STORES[request.param](tmp_path)
    yield s
    await s.close()


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with mqkit.connect(f"memory://half-{uuid.uuid4().hex}") as b:
        yield b


def group() -> str:  # the PostgreSQL table is shared by tests: each test its own group
    return f"g-{uuid.uuid4().hex[:8]}"


async def visible(
    broker: Broker, topic: str, wait: float = 0.3, group: str = "reader"
) -> list[Message]:
    """Everything a consumer of `group` can read from the topic until `wait` s pass quietly."""
    out: list[Message] = []
    async with await broker.subscribe(topic, group=group, start="earliest") as sub:
        while True:
            try:
                d = await asyncio.wait_for(anext(sub), wait)
            except TimeoutError:
                return out
            out.append(d.message)
            await d.ack()


async def test_prepared_is_invisible_commit_publishes_once_rollback_drops(
    store: HalfStore, broker: Broker
) -> None:
    producer = HalfProducer(broker, store, group=group())
    a = await producer.prepare("orders", {"n": 1}, key="k")
    b = await producer.prepare("orders", {"n": 2})
    assert await visible(broker, "orders") == []
    sent = await a.commit()
    assert sent.id == a.id and await a.commit() == sent  # a second commit changes nothing
    await b.rollback()
    with pytest.raises(HalfMessageError, match="rolled back"):
        await b.commit()
    with pytest.raises(HalfMessageError, match="committed"):
        await a.rollback()
    [got] = await visible(broker, "orders")
    assert (got.id, got.key, got.decode(dict)) == (a.id, "k", {"n": 1})
    assert [r.state for r in await store.records(producer.group, resolved=True)] == [
        "committed",
        "rolled_back",
    ]
    assert await store.records(producer.group) == []  # nothing pending


async def test_transaction_commits_on_success_and_rolls_back_on_error(
    store: HalfStore, broker: Broker
) -> None:
    producer = HalfProducer(broker, store, group=group())
    async with producer.transaction("t", "kept") as kept:
        assert await visible(broker, "t") == []
    with pytest.raises(ZeroDivisionError):
        async with producer.transaction("t", "dropped"):
            1 / 0  # noqa: B018 - the local transaction fails
    assert [m.id for m in await visible(broker, "t")] == [kept.id]
    with pytest.raises(mqkit.errors.InvalidTopicError):
        await producer.prepare("bad topic", "x")


async def test_check_back_commits_rolls_back_and_dead_letters_unknown(
    store: HalfStore, broker: Broker
) -> None:
    g = group()
    # Long enough that preparing four is over before any is due, on a loaded machine too
    # (0.1 s was not, once in CI, on Sentinel).
    producer = HalfProducer(broker, store, group=g, check_after=1.0)
    wanted = {}
    for answer in ("commit", "rollback", "unknown", "raises"):
        half = await producer.prepare("t", answer)
        wanted[half.id] = answer

    asked: Counter[str] = Counter()

    async def check(message: Message) -> Resolution:
        asked[message.id] += 1
        answer = wanted[message.id]
        if answer == "raises":
            raise ConnectionError("the database is down")
        return Resolution(answer)

    checker = HalfChecker(broker, store, check, group=g, interval=0.05, max_checks=3)
    assert await checker.check_once() == 0  # not due before check_after
    await asyncio.sleep(1.05)
    for _ in range(3):
        await checker.check_once()
        await asyncio.sleep(0.06)
    assert await checker.check_once() == 0  # all resolved
    assert (checker.stats.committed, checker.stats.rolled_back) == (1, 1)
    assert checker.stats.dead_lettered == 2  # UNKNOWN and a failing check, 3 times each
    [committed] = await visible(broker, "t")
    assert wanted[committed.id] == "commit"
    dead = await visible(broker, "t.dlq")
    assert sorted(wanted[m.id] for m in dead) == ["raises", "unknown"]
    assert all("UNKNOWN 3 times" in m.headers["mqkit-error"] for m in dead)
    assert all(m.headers["mqkit-group"] == g for m in dead)
    assert [asked[i] for i, a in wanted.items() if a in ("unknown", "raises")] == [3, 3]
    records = {r.message.id: r for r in await store.records(g, resolved=True)}
    assert records[dead[0].id].state == "dead_lettered" and records[dead[0].id].reason


async def test_a_commit_left_half_done_is_finished_by_the_checker(
    store: HalfStore, broker: Broker
) -> None:
    g = group()
    producer = HalfProducer(broker, store, group=g, check_after=60)
    half = await producer.prepare("t", "x")
    # The producer decided to commit and died before publishing (its lease: already over).
    assert await store.begin_commit(half.id, "dead-producer", lease=0.0) is not None

    def never(message: Message) -> Resolution:
        raise AssertionError("a decided commit is not checked again")

    checker = HalfChecker(broker, store, never, group=g)
    assert await checker.check_once() == 1 and checker.stats.finished == 1
    assert [m.id for m in await visible(broker, "t")] == [half.id]
    assert not await store.finish_commit(half.id, "dead-producer")  # too late, and harmless


async def test_two_checkers_never_publish_a_message_twice(store: HalfStore, broker: Broker) -> None:
    g = group()
    producer = HalfProducer(broker, store, group=g, check_after=0)
    ids = {(await producer.prepare("t", str(i))).id for i in range(300)}

    async def slow_commit(message: Message) -> Resolution:
        await asyncio.sleep(0.001)
        return Resolution.COMMIT

    checkers = [HalfChecker(broker, store, slow_commit, group=g, batch_size=20) for _ in range(2)]

    async def work(c: HalfChecker) -> None:
        while await c.check_once():
            pass

    await asyncio.gather(*(work(c) for c in checkers))
    published = [m.id for m in await visible(broker, "t")]
    assert Counter(published).most_common(1)[0][1] == 1 and set(published) == ids
    assert all(c.stats.committed for c in checkers)  # both took part
    assert sum(c.stats.committed for c in checkers) == 300


async def test_purge_forgets_resolved_records_only(store: HalfStore, broker: Broker) -> None:
    producer = HalfProducer(broker, store, group=group())
    done = await producer.prepare("t", "a")
    await done.commit()
    pending = await producer.prepare("t", "b")
    assert await store.purge_resolved(time.time() + 1) >= 1
    assert await store.get(done.id) is None
    assert (await store.get(pending.id)) is not None
