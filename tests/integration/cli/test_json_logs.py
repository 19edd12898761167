"""`mqkit run --log-format json`: every line one JSON object; what the handler logs carries
the message's id, topic, group and attempt and the id of the trace it continues (the
publish's, made in this process), so logs and traces join."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mqkit
from tests.support.services import ROOT
from tests.support.tracing import ids, spans

__all__ = ["spans"]  # the fixture

APP = """
import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import mqkit
from mqkit.retry import RetryPolicy

trace.set_tracer_provider(TracerProvider())  # spans made, exported nowhere
app = mqkit.App(retry=RetryPolicy(max_attempts=2, base_delay=0.05, jitter=False))
log = logging.getLogger("billing")

@app.subscriber("orders", group="billing")
async def bill(body: bytes) -> None:
    log.info("billing %s", body.decode())
    if body == b"flaky":
        raise RuntimeError("once")
"""


async def lines_until(stream: asyncio.StreamReader, done: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        while not done(seen):
            line = await stream.readline()
            assert line, f"the worker ended; it wrote {seen}"
            seen.append(json.loads(line))  # every line is one JSON object
    return seen


async def test_handler_logs_carry_the_message_and_its_trace(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    (tmp_path / "billing.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mqkit", "run", "billing:app", "--url", url,
        "--log-format", "json", "--shutdown-timeout", "5",
        cwd=tmp_path, env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert worker.stderr is not None
    try:
        async with mqkit.connect(url) as broker:
            sent = await broker.publish("orders", b"flaky")

            def both_attempts(seen: list[dict[str, Any]]) -> bool:
                return sum(line["message"] == "billing flaky" for line in seen) == 2

            seen = await lines_until(worker.stderr, both_attempts)
    finally:
        worker.terminate()
        rest = (await asyncio.wait_for(worker.communicate(), 30))[1].decode()
    assert worker.returncode == 0, rest
    for line in rest.splitlines():
        json.loads(line)
    trace_id = f"{ids(sent.headers['traceparent'])[0]:032x}"
    handled = [line for line in seen if line["message"] == "billing flaky"]
    assert [line["attempt"] for line in handled] == [1, 2]
    for line in handled:
        assert line["message_id"] == sent.id
        assert (line["topic"], line["group"], line["logger"]) == ("orders", "billing", "billing")
        assert line["trace_id"] == trace_id and line["level"] == "INFO"
    # mqkit's own lines: the start, outside any message.
    [started] = [line for line in seen if line["message"].startswith("mqkit: running")]
    assert "message_id" not in started and "trace_id" not in started
