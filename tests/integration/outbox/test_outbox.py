"""The outbox on SQLite and PostgreSQL: writing in the caller's transaction, relaying with
confirms, per-key order and exclusive claims across relays, retention, lag, bad rows, NOTIFY."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import mqkit
from mqkit import outbox
from mqkit.broker import Broker
from mqkit.errors import ClosedError, InvalidTopicError
from mqkit.message import Message
from mqkit.outbox.schema import outbox as table
from tests.support.databases import Database
from tests.support.waiting import receive


async def read_all(broker: Broker, topic: str, n: int, group: str = "g") -> list[Message]:
    out: list[Message] = []
    async with await broker.subscribe(topic, group=group, start="earliest") as sub:
        while len(out) < n:
            d = await asyncio.wait_for(anext(sub), 10)
            out.append(d.message)
            await d.ack()
    return out


async def count_rows(db: Database, unsent_only: bool = False) -> int:
    q = select(func.count()).select_from(table)
    if unsent_only:
        q = q.where(table.c.sent_at.is_(None))
    async with db.engine.connect() as conn:
        return int(await conn.scalar(q) or 0)


async def test_add_in_every_kind_of_transaction_commits_or_rolls_back_with_it(
    db: Database, memory_url: str
) -> None:
    written: list[Message] = []
    # sync Session and Connection
    with Session(db.sync) as session, session.begin():
        written.append(outbox.add(session, "orders", {"n": 1}, key="k", headers={"h": "1"}))
    with db.sync.begin() as conn:
        written.append(outbox.add(conn, "orders", b"\x00\xff", key="k"))
    # async Session and Connection
    async with AsyncSession(db.engine) as asession, asession.begin():
        written.append(await outbox.add(asession, "orders", "three", key="k"))
    async with db.engine.begin() as aconn:
        written.append(await outbox.add(aconn, "orders", 4, key="k"))
    if db.name == "sqlite":  # the stdlib driver, as scripts use it
        raw = sqlite3.connect(db.url.removeprefix("sqlite:///"))
        with raw:
            written.append(outbox.add(raw, "orders", "five", key="k"))
        raw.close()

    # Rolled back: the message never exists.
    with pytest.raises(RuntimeError), Session(db.sync) as session, session.begin():
        outbox.add(session, "orders", "gone")
        raise RuntimeError("business rule failed")
    async with db.engine.connect() as aconn:
        await outbox.add(aconn, "orders", "gone too")
        await aconn.rollback()
    assert await count_rows(db) == len(written)

    async with mqkit.connect(memory_url) as broker:
        relay = outbox.OutboxRelay(db.engine, broker)
        assert await relay.drain() == len(written)
        got = await read_all(broker, "orders", len(written))
    assert [(m.id, m.key, m.body, m.content_type) for m in got] == [
        (m.id, m.key, m.body, m.content_type) for m in written
    ]
    assert got[0].headers == {"h": "1"} and got[0].decode(dict) == {"n": 1}
    assert abs(got[0].timestamp - written[0].timestamp) < 1e-3  # the time it was written
    assert await count_rows(db) == 0


async def test_add_refuses_bad_input_before_writing(db: Database) -> None:
    with Session(db.sync) as session, session.begin():
        with pytest.raises(InvalidTopicError):
            outbox.add(session, "no spaces allowed", "x")
        with pytest.raises(TypeError, match="Session"):
            outbox.add(object(), "t", "x")  # type: ignore[call-overload]
    assert await count_rows(db) == 0


async def test_broker_failure_leaves_rows_unsent(db: Database, memory_url: str) -> None:
    with db.sync.begin() as conn:
        for i in range(3):
            outbox.add(conn, "t", i)
    broker = await mqkit.connect(memory_url).start()
    await broker.close()
    with pytest.raises(ClosedError):
        await outbox.OutboxRelay(db.engine, broker).relay_once()
    assert await count_rows(db, unsent_only=True) == 3
    if db.name == "sqlite":  # the failed relay's lease does not hold the rows past its end
        async with mqkit.connect(memory_url) as broker:
            relay = outbox.OutboxRelay(db.engine, broker, lease=0.2)
            await asyncio.sleep(0.3)
            assert await relay.drain() == 0  # the earlier lease was 30 s: still held
        async with db.engine.begin() as conn:
            await conn.execute(table.update().values(claimed_until=time.time() - 1))
    async with mqkit.connect(memory_url) as broker:
        assert await outbox.OutboxRelay(db.engine, broker).drain() == 3


async def test_retention_keeps_sent_rows_and_status_shows_lag(
    db: Database, memory_url: str
) -> None:
    with db.sync.begin() as conn:
        first = outbox.add(conn, "t", "a")
        outbox.add(conn, "t", "b")
    await asyncio.sleep(0.2)
    state = await outbox.outbox_status(db.engine)
    assert state.unsent == 2 and state.oldest_unsent_id == first.id and state.lag >= 0.2
    async with mqkit.connect(memory_url) as broker:
        relay = outbox.OutboxRelay(db.engine, broker, retention=3600)
        assert await relay.drain() == 2
        assert await relay.drain() == 0  # kept rows are not sent again
        state = await outbox.outbox_status(db.engine)
        assert (state.unsent, state.sent_kept, state.lag) == (0, 2, 0.0)
        assert await relay.purge_sent() == 0
        relay.retention = 0.001
        await asyncio.sleep(0.01)
        assert await relay.purge_sent() == 2


async def test_a_row_the_broker_refuses_is_kept_as_failed_and_the_rest_go_out(
    db: Database, memory_url: str
) -> None:
    with db.sync.begin() as conn:
        outbox.add(conn, "t", "ok-1", key="k")
        big = outbox.add(conn, "t", b"x" * 5000, key="k")
        outbox.add(conn, "t", "ok-2", key="k")
    async with mqkit.connect(memory_url + "?max_message_bytes=1000") as broker:
        relay = outbox.OutboxRelay(db.engine, broker)
        assert await relay.drain() == 3
        assert relay.failed == 1
        assert [m.body for m in await read_all(broker, "t", 2)] == [b"ok-1", b"ok-2"]
        [note] = await read_all(broker, "t.dlq", 1)
        assert await relay.drain() == 0  # not retried
    assert note.id == big.id and "MessageTooLargeError" in note.headers["mqkit-error"]
    assert note.body == b"" and note.headers["mqkit-body-in-outbox"] == "5000"
    state = await outbox.outbox_status(db.engine)
    assert (state.unsent, state.failed) == (0, 1)
    async with db.engine.connect() as c:  # nothing lost: the row keeps its body
        row = (await c.execute(select(table.c.body, table.c.error))).one()
    assert bytes(row.body) == big.body and "exceeds the limit" in row.error


async def test_relays_side_by_side_never_claim_a_row_twice_and_keep_each_keys_order(
    db: Database, memory_url: str
) -> None:
    keys = [f"k{i}" for i in range(20)]
    with db.sync.begin() as conn:
        for i in range(2000):
            outbox.add(conn, "t", str(i), key=keys[i % len(keys)] if i % 10 else None)
    published: list[Message] = []
    per_relay: dict[int, int] = defaultdict(int)

    def recorder(n: int):  # type: ignore[no-untyped-def]
        async def on_published(batch: Sequence[Message]) -> None:
            published.extend(batch)  # after the confirm, before the rows are marked
            per_relay[n] += len(batch)
            await asyncio.sleep(0.005)  # hold the claim a moment, so claims overlap

        return on_published

    async with mqkit.connect(memory_url) as broker:
        relays = [
            outbox.OutboxRelay(db.engine, broker, batch_size=50, on_published=recorder(n))
            for n in range(3)
        ]
        await asyncio.gather(*(r.drain() for r in relays))
    ids = [m.id for m in published]
    assert len(ids) == len(set(ids)) == 2000  # every row once: no double claims
    assert sum(1 for n in per_relay.values() if n) >= 2  # they really shared the work
    last: dict[str, int] = {}
    for m in published:
        if m.key is not None:
            assert int(m.body) > last.get(m.key, -1), f"{m.key} out of order"
            last[m.key] = int(m.body)


async def test_relay_wakes_on_notify_without_waiting_for_the_poll(
    db: Database, memory_url: str
) -> None:
    if db.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    async with mqkit.connect(memory_url) as broker:
        relay = outbox.OutboxRelay(db.engine, broker, poll_interval=60)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await asyncio.sleep(0.5)  # it has polled once and sleeps on LISTEN
        async with db.engine.begin() as conn:
            await outbox.add(conn, "t", "wake up")
        deadline = time.monotonic() + 10  # far below the 60 s poll
        while relay.relayed == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        async with db.engine.begin() as conn:  # a NOTIFY ends the last wait at once
            await outbox.add(conn, "t", "bye")
        await asyncio.wait_for(task, 10)
    assert relay.relayed >= 1


async def test_relay_polls_when_no_notify_ever_comes(db: Database, memory_url: str) -> None:
    """Without NOTIFY (SQLite; PostgreSQL with the trigger dropped, as a migration might
    leave it) the relay still publishes, on its poll."""
    from sqlalchemy import text

    if db.name == "postgresql":
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER mqkit_outbox_notify ON mqkit_outbox"))
    async with mqkit.connect(memory_url) as broker:
        relay = outbox.OutboxRelay(db.engine, broker, poll_interval=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        async with await broker.subscribe("t", group="g") as sub:
            for n in range(3):  # each one found by a poll, not woken by a NOTIFY
                async with db.engine.begin() as conn:
                    await outbox.add(conn, "t", f"row {n}")
                (got,) = await receive(sub, 1, timeout=20)
                assert got.message.body == f"row {n}".encode()
        stop.set()
        await asyncio.wait_for(task, 10)
    assert relay.relayed == 3
