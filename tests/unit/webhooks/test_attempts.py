"""The attempt log keeps what a failed write held, for the next flush, and closing never
cancels a write midway."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mqkit.message import Message
from mqkit.testing.waiting import until
from mqkit.webhooks.attempts import Attempt, AttemptLog
from tests.support.gates import Gate


def _attempt(message: Message, n: int) -> Attempt:
    return Attempt("ep_1", message.id, message.topic, n, float(n), 500, False, 1.0, "retrying")


async def test_a_failed_write_is_kept_for_the_next_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AttemptLog(f"sqlite:///{tmp_path / 'hooks.db'}")
    message = Message.create("orders", b"{}")
    log.record(_attempt(message, 1), message)
    write = log._write

    async def unavailable(*args: Any) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(log, "_write", unavailable)
    with pytest.raises(OSError):
        await log.flush()
    log.record(_attempt(message, 2), message)
    monkeypatch.setattr(log, "_write", write)
    await log.flush()
    assert [a.attempt for a in await log.attempts("ep_1")] == [2, 1]  # newest first
    assert [m.id for m in await log.to_replay("ep_1", since=0.0)] == [message.id]
    await log.close()


async def test_while_the_database_stays_away_the_buffer_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AttemptLog(f"sqlite:///{tmp_path / 'hooks.db'}", max_kept=10)

    async def unavailable(*args: Any) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(log, "_write", unavailable)
    for n in range(25):
        message = Message.create("orders", b"{}")
        log.record(_attempt(message, n), message)
        with pytest.raises(OSError):
            await log.flush()
    assert [a["attempt"] for a in log._attempts] == list(range(15, 25))
    assert len(log._messages) == 10


@pytest.mark.parametrize("wal", [True, False])
async def test_the_webhook_database_is_in_wal_mode_only_when_asked(
    tmp_path: Path, wal: bool
) -> None:
    import sqlite3

    from mqkit.sql import engine_for

    path = tmp_path / "hooks.db"
    engine = engine_for(f"sqlite:///{path}", wal=wal)
    log = AttemptLog(engine=engine)
    message = Message.create("orders", b"{}")
    log.record(_attempt(message, 1), message)
    await log.close()
    await engine.dispose()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == ("wal" if wal else "delete")


async def test_closing_lets_the_writers_write_in_flight_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SQLite write (or read) cancelled midway leaves its connection holding the file's
    # lock until it is garbage-collected: every other writer then fails "database is locked".
    log = AttemptLog(f"sqlite:///{tmp_path / 'hooks.db'}", flush_interval=0.01)
    write = log._write
    gate = Gate()

    async def slow(*args: Any) -> None:
        await gate.hold()
        await write(*args)

    monkeypatch.setattr(log, "_write", slow)
    message = Message.create("orders", b"{}")
    log.record(_attempt(message, 1), message)
    writer = log._writer
    assert writer is not None
    await asyncio.wait_for(gate.reached.wait(), 30)
    closing = asyncio.ensure_future(log.close())
    await until(writer.done)  # close() has cancelled the writer task
    gate.open()
    await asyncio.wait_for(closing, 30)
    assert gate.outcome == ["finished"]
    reopened = AttemptLog(f"sqlite:///{tmp_path / 'hooks.db'}")
    assert [a.attempt for a in await reopened.attempts("ep_1")] == [1]
    await reopened.close()
