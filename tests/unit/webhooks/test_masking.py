"""Endpoint URLs carry credentials (`https://user:token@...`, `?token=...`); no surface the
dispatcher feeds shows them: SSRF errors, the attempt log, its log lines, its events."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path

import pytest

import mqkit
from mqkit.webhooks import SsrfError, SsrfGuard
from mqkit.webhooks.attempts import AttemptLog
from mqkit.webhooks.client import WebhookClient
from mqkit.webhooks.dispatcher import EVENTS_TOPIC, Dispatcher
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry
from mqkit.webhooks.schedule import Schedule
from tests.support.waiting import drain
from tests.support.webhooks import Script, serving

SECRET = "s3cr3tvalue"
# {host} is filled per surface; each form hides the secret somewhere else.
FORMS = [
    "http://user:" + SECRET + "@{host}/hook",
    "http://" + SECRET + "@{host}/hook",
    "http://{host}/hook?token=" + SECRET,
    "http://{host}/hook?X-Amz-Signature=" + SECRET + "&page=2",
    "http://{host}/hook?api_key=" + SECRET,
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("form", FORMS)
async def test_ssrf_errors_never_show_the_secret(form: str) -> None:
    with pytest.raises(SsrfError) as info:
        await SsrfGuard().check(form.format(host="127.0.0.1:9"))
    assert SECRET not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("form", FORMS)
async def test_attempt_rows_logs_and_events_never_show_the_secret(
    form: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mqkit")  # mqkit's own lines, every level
    db = f"sqlite:///{tmp_path / 'hooks.db'}"
    registry, log = EndpointRegistry(db), AttemptLog(db, flush_interval=0.05)
    topic = "masked"
    async with serving() as endpoints, mqkit.connect("memory://") as broker:
        gone = endpoints.url("gone", Script([410]))  # disabled: a log line and an event
        urls = {
            "refused": form.format(host="10.0.0.1"),  # the guard refuses it
            "unreachable": form.format(host=f"127.0.0.1:{_closed_port()}"),
            "gone": form.format(host=gone.removeprefix("http://").removesuffix("/gone"))
            .replace("/hook", "/gone"),
        }  # fmt: skip
        added = {
            name: await registry.add(Endpoint(url=url, topics=[topic]))
            for name, url in urls.items()
        }
        events = await broker.subscribe(EVENTS_TOPIC, group="t")
        dispatcher = Dispatcher(
            broker, registry, log, topics=[topic], schedule=Schedule((0,), jitter=0),
            client=WebhookClient(SsrfGuard(["127.0.0.1/32"]), timeout=2.0),
        )  # fmt: skip
        stop = asyncio.Event()
        async with dispatcher:
            task = asyncio.create_task(dispatcher.run(stop))
            await broker.publish(topic, {"n": 1})
            async with asyncio.timeout(20):
                while dispatcher.stats.failed_attempts < 3:
                    await asyncio.sleep(0.02)
            stop.set()
            await task
        await log.flush()
        published = [json.loads(d.message.body) for d in await drain(events, idle=0.3)]
        await events.close()
        rows = [a.row() for e in added.values() for a in await log.attempts(e.id)]
    await log.close()
    await registry.close()
    assert {r["outcome"] for r in rows} == {"refused", "failed", "disabled"}, rows
    assert any("***" in (r["error"] or "") for r in rows), rows  # the URL was there, masked
    assert {e["type"] for e in published} >= {"webhook.endpoint.disabled"}
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mqkit"))
    assert "disabled webhook endpoint" in ours
    shown = json.dumps(rows) + json.dumps(published) + ours
    assert SECRET not in shown
