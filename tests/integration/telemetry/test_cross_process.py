"""A trace across two processes on every real backend: this process publishes (the SDK's
in-memory exporter), a `mqkit run` subprocess handles (its application installs the SDK,
exporting each span as a JSON line): the worker's `process` span is a child of this
process's `send` span, its first attempt fails and its second is in the same trace."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mqkit
from tests.support.services import ROOT, backend_url
from tests.support.tracing import named, spans

__all__ = ["spans"]  # the fixture

APP = """
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import mqkit
from mqkit.retry import RetryPolicy

out = open(os.environ["SPANS"], "a", buffering=1)
provider = TracerProvider()
exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\\n")
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

app = mqkit.App(retry=RetryPolicy(max_attempts=3, base_delay=0.05, jitter=False))
seen = set()

@app.subscriber(os.environ["TOPIC"], group="billing")
async def bill(body: bytes) -> None:
    if body not in seen:
        seen.add(body)
        raise RuntimeError("the first attempt fails")
"""


async def exported(path: Path, name: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The `count` spans called `name` the subprocess exported (a line each as it ends them)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [span for span in await asyncio.to_thread(_spans, path) if span["name"] == name]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} {name} spans in {timeout}s"
        await asyncio.sleep(0.1)


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("backend", ["sqlite", "redis", "rabbitmq", "kafka"])
@pytest.mark.timeout(180)
async def test_the_worker_in_another_process_continues_the_trace(
    spans: InMemorySpanExporter, backend: str, tmp_path: Path
) -> None:
    topic = f"traced-{uuid.uuid4().hex[:8]}"
    url = backend_url(backend, tmp_path)
    (tmp_path / "billing.py").write_text(APP)
    out = tmp_path / "spans.jsonl"
    env = {**os.environ, "TOPIC": topic, "SPANS": str(out), "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    async with mqkit.connect(url) as broker:
        # The group exists before the publish (Kafka's, RabbitMQ's queue): nothing is missed.
        await (await broker.subscribe(topic, group="billing")).close()
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mqkit", "run", "billing:app", "--url", url,
            "--shutdown-timeout", "5",
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            sent = await broker.publish(topic, b"order 1")
            theirs = await exported(out, f"process {topic}", 2)
        finally:
            worker.terminate()
            output = (await asyncio.wait_for(worker.communicate(), 30))[0].decode()
    print(output[-3000:])
    assert worker.returncode == 0
    [send] = named(spans, f"send {topic}")
    trace_id = f"0x{send.context.trace_id:032x}"
    span_id = f"0x{send.context.span_id:016x}"
    assert sent.headers["traceparent"].split("-")[1] == trace_id[2:]
    first, second = sorted(theirs, key=lambda s: s["attributes"]["mqkit.attempt"])
    assert first["context"]["trace_id"] == second["context"]["trace_id"] == trace_id
    assert first["parent_id"] == span_id  # the first attempt: a child of this process's send
    assert first["attributes"]["mqkit.outcome"] == "retried"
    assert first["attributes"]["error.type"] == "RuntimeError"
    assert second["attributes"]["mqkit.outcome"] == "handled"
    assert first["attributes"]["messaging.system"] == second["attributes"]["messaging.system"]
