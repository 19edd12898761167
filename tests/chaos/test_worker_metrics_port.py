"""`mqkit run --metrics-port` on a real broker (Redis), as an operator runs it: /metrics
scraped and parsed with prometheus_client's parser, its counters equal to what was
published and what became of it; /readyz 503 while Redis is stopped, 200 once it is back;
/healthz 200 throughout."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import mqkit
from tests.support.services import ROOT, URLS, services

pytestmark = pytest.mark.slow

APP = """
import os
import mqkit
from mqkit.retry import RetryPolicy

app = mqkit.App(retry=RetryPolicy(max_attempts=3, base_delay=0.05, jitter=False))
failed = set()

@app.subscriber(os.environ["TOPIC"], group="billing")
async def bill(body: bytes) -> None:
    if body == b"bad":
        raise mqkit.Reject("not an order")
    if body.startswith(b"flaky") and body not in failed:
        failed.add(body)
        raise RuntimeError("once")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def until_status(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = await client.get(path)
            if response.status_code == status:
                return response
        except httpx.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"{path} did not answer {status} in 60s"
        await asyncio.sleep(0.2)


async def until_scraped(
    client: httpx.AsyncClient, done: Callable[[str], bool], timeout: float = 60
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = (await client.get("/metrics")).text
        if done(text):
            return text
        assert time.monotonic() < deadline, f"the metrics never got there:\n{text[-3000:]}"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_metrics_match_what_happened_and_readyz_follows_the_broker(
    tmp_path: Path,
) -> None:
    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    (tmp_path / "billing.py").write_text(APP)
    port = free_port()
    env = {**os.environ, "TOPIC": topic, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "mqkit", "run", "billing:app", "--url", URLS["redis"],
         "--metrics-port", str(port), "--shutdown-timeout", "5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await until_status(client, "/readyz", 200)
            async with mqkit.connect(URLS["redis"]) as broker:
                for i in range(10):
                    await broker.publish(topic, f"order {i}".encode())
                await broker.publish(topic, b"bad")
                await broker.publish(topic, b"flaky 1")
            consumed = "messaging_client_consumed_messages_total"
            text = await until_scraped(client, lambda t: total(t, consumed) >= 13)

            mine = {"messaging_destination_name": topic, "messaging_consumer_group_name": "billing"}
            assert total(text, consumed, **mine) == 13  # 12 messages, one of them twice
            assert total(text, consumed, mqkit_outcome="handled", **mine) == 11
            assert total(text, consumed, mqkit_outcome="retried", error_type="RuntimeError") == 1
            assert total(text, consumed, mqkit_outcome="rejected", error_type="Reject") == 1
            assert total(text, "mqkit_retries_total", **mine) == 1
            assert total(text, "mqkit_dead_letters_total", mqkit_reason="rejected", **mine) == 1
            assert total(text, "messaging_process_duration_seconds_count", **mine) == 13
            sent = "messaging_client_sent_messages_total"  # the worker sent the dead letter
            assert total(text, sent, messaging_destination_name=f"{topic}.dlq") == 1
            assert total(text, sent, messaging_system="redis") == 1
            assert total(text, "mqkit_handlers_in_flight", **mine) == 0

            await services("down", "redis")
            try:
                refused = await until_status(client, "/readyz", 503)
                assert "127.0.0.1:6379" in refused.text, refused.text
                assert (await client.get("/healthz")).status_code == 200
            finally:
                await services("up", "redis")
            await until_status(client, "/readyz", 200)
        worker.terminate()
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        output = worker.communicate()[0].decode()
        print(output[-3000:])
