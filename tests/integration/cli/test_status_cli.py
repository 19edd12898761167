"""`mqkit status` as an operator runs it: a separate process reading a broker (sqlite, and
Redis for a real server) and the application's database, in JSON, in a table, live with
--watch, and one line with exit 2 when the broker cannot be reached."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

import mqkit
from mqkit import outbox
from mqkit.half import HalfProducer, store_for
from mqkit.webhooks.attempts import Attempt, AttemptLog
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry
from tests.support.cli import mqkit as cli
from tests.support.databases import database
from tests.support.services import ROOT, URLS

APP = """
import mqkit

app = mqkit.App()

@app.subscriber("{topic}", group="billing")
async def bill(body: bytes) -> None:
    pass

@app.subscriber("{topic}", group="audit")
async def audit(body: bytes) -> None:
    pass
"""


async def backlog(url: str, topic: str) -> None:
    """Three messages for `billing`: one dead-lettered, one in hand when it stops (handed
    back, so waiting again), one never delivered."""
    async with mqkit.connect(url) as broker:
        await (await broker.subscribe(topic, group="billing")).close()
        for i in range(3):
            await broker.publish(topic, f"order {i}")
        async with await broker.subscribe(topic, group="billing", prefetch=1) as sub:
            await (await anext(sub)).reject("not an order")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_status_json_shows_the_groups_and_the_database(tmp_path: Path, backend: str) -> None:
    topic = f"status-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'q.db'}" if backend == "sqlite" else URLS["redis"]
    await backlog(url, topic)
    async with database("sqlite", tmp_path) as db, mqkit.connect(url) as broker:
        async with AsyncSession(db.engine) as session, session.begin():
            for i in range(2):
                await outbox.add(session, topic, f"row {i}")
        store = store_for(db.url)
        await HalfProducer(broker, store, group="orders-service").prepare(topic, b"half")
        await store.close()
        registry, attempts = EndpointRegistry(db.url), AttemptLog(db.url)
        hook = await registry.add(
            Endpoint(url="https://hooks.example/in?token=s3cret", topics=[topic])
        )
        at = time.time() - 30
        attempts.record(Attempt(hook.id, "m1", topic, 1, at, 204, True, 3.0, "delivered"))
        await attempts.close()
        await registry.close()
        shown = await asyncio.to_thread(
            cli, "status", "-g", f"{topic}:billing", "--db", db.url, "--json", url=url
        )
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    [group] = status["groups"]
    assert (group["topic"], group["group"]) == (topic, "billing")
    assert group["waiting"] == 2 and group["dead_letters"] == 1
    assert group["in_flight"] == 0 and group["oldest_age_seconds"] >= 0
    assert status["outbox"]["unsent"] == 2
    [half] = status["half"]
    assert half["group"] == "orders-service" and half["pending"] == 1
    [endpoint] = status["webhooks"]
    assert endpoint["id"] == hook.id and endpoint["enabled"] is True
    assert "s3cret" not in endpoint["url"]
    assert abs(endpoint["last_success"] - at) < 1


def test_status_of_an_app_table_and_watch(tmp_path: Path) -> None:
    topic = f"status-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'q.db'}"
    asyncio.run(backlog(url, topic))
    (tmp_path / "billing.py").write_text(APP.format(topic=topic))
    shown = cli("status", "billing:app", "--json", url=url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    groups = {g["group"]: g for g in json.loads(shown.stdout)["groups"]}
    assert groups["billing"]["waiting"] == 2
    assert groups["audit"]["waiting"] == 3  # a new group starts at the earliest

    table = cli("status", "billing:app", url=url, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.decode().splitlines()
    assert any("billing" in line and " 2 " in line for line in lines), lines

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MQKIT_URL": url}
    watching = subprocess.Popen(
        [sys.executable, "-m", "mqkit", "status", "-g", f"{topic}:billing", "--watch",
         "--json", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert watching.stdout is not None
        seen = [json.loads(watching.stdout.readline()) for _ in range(3)]
    finally:
        watching.terminate()
        watching.wait(30)
    assert [s["groups"][0]["waiting"] for s in seen] == [2, 2, 2]


def test_status_says_in_one_line_when_the_broker_cannot_be_reached(tmp_path: Path) -> None:
    shown = cli("status", "-g", "orders:billing", url="redis://:hunter2@127.0.0.1:1/0")
    assert shown.returncode == 2
    [line] = shown.stderr.decode().splitlines()
    assert line.startswith("mqkit: error: ") and "127.0.0.1:1" in line
    assert "hunter2" not in line


def test_status_needs_groups_to_show(tmp_path: Path) -> None:
    shown = cli("status", url=f"sqlite:///{tmp_path / 'q.db'}")
    assert shown.returncode == 2
    assert shown.stderr.decode().strip() == (
        "mqkit: error: name the groups: an app (mqkit status module:app) or --group topic:group"
    )
