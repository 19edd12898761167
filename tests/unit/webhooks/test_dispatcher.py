"""The dispatcher against real HTTP endpoints on 127.0.0.1, over the in-memory broker.

The SSRF guard is on in every test, with 127.0.0.1/32 allowed so the local endpoints can be
reached; test_ssrf_refused_with_the_guard_on proves everything else is still refused.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import mqkit
from mqkit.webhooks import Secret, SsrfGuard, verify
from mqkit.webhooks.attempts import AttemptLog
from mqkit.webhooks.client import WebhookClient
from mqkit.webhooks.dispatcher import EVENTS_TOPIC, Dispatcher
from mqkit.webhooks.endpoints import Endpoint, EndpointRegistry
from mqkit.webhooks.lanes import Breaker
from mqkit.webhooks.schedule import Schedule
from tests.support.gates import Gate
from tests.support.webhooks import Endpoints, Script, serving

LOCAL = ["127.0.0.1/32"]


class Env:
    def __init__(self, tmp: Path, endpoints: Endpoints, broker: mqkit.Broker) -> None:
        db = f"sqlite:///{tmp / 'webhooks.db'}"
        self.registry = EndpointRegistry(db)
        self.log = AttemptLog(db, flush_interval=0.05)
        self.endpoints = endpoints
        self.broker = broker
        self.topic = f"orders-{uuid.uuid4().hex[:8]}"

    async def add(self, name: str, script: Script | None = None, **fields: Any) -> Endpoint:
        url = fields.pop("url", None) or self.endpoints.url(name, script)
        return await self.registry.add(Endpoint(url=url, topics=[self.topic], **fields))

    @asynccontextmanager
    async def running(
        self,
        *,
        waits: tuple[float, ...] = (0, 0.2, 0.2, 0.2),
        timeout: float = 2.0,
        allow: list[str] | None = None,
        **options: Any,
    ) -> AsyncIterator[Dispatcher]:
        client = WebhookClient(SsrfGuard(LOCAL if allow is None else allow), timeout=timeout)
        dispatcher = Dispatcher(
            self.broker,
            self.registry,
            self.log,
            topics=[self.topic],
            client=client,
            schedule=Schedule(waits, jitter=0),
            refresh=0.2,
            **options,
        )
        stop = asyncio.Event()
        async with dispatcher:
            task = asyncio.create_task(dispatcher.run(stop))
            try:
                await asyncio.wait_for(dispatcher.ready.wait(), 30)
                yield dispatcher
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
                await self.log.flush()

    async def publish(self, n: int = 1, **kw: Any) -> list[mqkit.Message]:
        messages = [mqkit.Message.create(self.topic, {"n": i}, **kw) for i in range(n)]
        await self.broker.publish_batch(messages)
        return messages


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with serving() as endpoints, mqkit.connect("memory://") as broker:
        e = Env(tmp_path, endpoints, broker)
        yield e
        await e.log.close()
        await e.registry.close()


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_500_three_times_then_200_is_one_success_with_the_same_id(env: Env) -> None:
    script = Script([500, 500, 500, 200])
    endpoint = await env.add("flaky", script)
    # Waits of 1 s put every attempt in a different second: a fresh timestamp and signature.
    async with env.running(waits=(0, 1.0, 1.0, 1.0)) as d:
        [message] = await env.publish()
        await until(lambda: d.stats.delivered == 1)
    assert len(script.received) == 4
    ids = {r.headers["webhook-id"] for r in script.received}
    assert ids == {message.id}
    assert len({r.headers["webhook-timestamp"] for r in script.received}) == 4
    assert len({r.headers["webhook-signature"] for r in script.received}) == 4
    secrets = endpoint.signing_secrets()
    for r in script.received:
        assert verify(secrets, r.headers, r.body) == message.id
    attempts = await env.log.attempts(endpoint.id)
    assert [(a.attempt, a.status, a.outcome) for a in reversed(attempts)] == [
        (1, 500, "retrying"),
        (2, 500, "retrying"),
        (3, 500, "retrying"),
        (4, 200, "delivered"),
    ]
    assert attempts[0].response and attempts[0].response.startswith("answer")


async def test_a_hanging_endpoint_is_aborted_at_the_timeout(env: Env) -> None:
    endpoint = await env.add("hangs", Script(hang=True))
    async with env.running(waits=(0,), timeout=0.5) as d:
        await env.publish()
        await until(lambda: d.stats.exhausted == 1)
    [attempt] = await env.log.attempts(endpoint.id)
    assert attempt.status is None and attempt.outcome == "failed"
    assert attempt.error == "timed out after 0.5s"
    assert 450 <= attempt.latency_ms < 2000


async def test_410_disables_the_endpoint(env: Env) -> None:
    endpoint = await env.add("gone", Script([410]))
    events = await env.broker.subscribe(EVENTS_TOPIC, group="t")
    async with env.running() as d:
        await env.publish(3)
        await until(lambda: endpoint.id in d.stats.disabled)
    stored = await env.registry.get(endpoint.id)
    assert not stored.enabled and stored.disabled_reason == "the endpoint answered 410 Gone"
    event = json.loads((await asyncio.wait_for(anext(events), 5)).message.body)
    assert event["type"] == "webhook.endpoint.disabled"
    assert event["data"]["endpoint_id"] == endpoint.id
    await events.close()
    # Nothing more was sent once it was disabled, and nothing was retried.
    assert len(env.endpoints["gone"].received) <= 3


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_retry_after_is_honoured_on_throttling_answers(env: Env, status: int) -> None:
    script = Script([status, 204], headers={"Retry-After": "2"})
    await env.add("busy", script)
    async with env.running(waits=(0, 0.1)) as d:
        await env.publish()
        await until(lambda: d.stats.delivered == 1)
    first, second = script.received
    assert second.at - first.at >= 2.0


async def test_a_redirect_is_a_failure_and_is_not_followed(env: Env) -> None:
    target = env.endpoints.url("target")
    script = Script([302], headers={"Location": target})
    endpoint = await env.add("redirects", script)
    async with env.running(waits=(0,)) as d:
        await env.publish()
        await until(lambda: d.stats.exhausted == 1)
    assert env.endpoints["target"].received == []
    [attempt] = await env.log.attempts(endpoint.id)
    assert attempt.status == 302 and not attempt.ok and attempt.outcome == "failed"


REFUSED = [
    "http://127.0.0.1:{port}/x",
    "http://localhost:{port}/x",
    "http://2130706433:{port}/x",
    "http://0x7f000001:{port}/x",
    "http://127.1:{port}/x",
    "http://[::1]:{port}/x",
    "http://[::ffff:127.0.0.1]:{port}/x",
    "http://10.0.0.1:{port}/x",
    "http://169.254.169.254/latest/meta-data",
    "http://0.0.0.0:{port}/x",
]


async def test_ssrf_refused_with_the_guard_on_and_not_retried(env: Env) -> None:
    env.endpoints.url("x")
    added = [
        await env.add(f"e{i}", url=url.format(port=env.endpoints.port))
        for i, url in enumerate(REFUSED)
    ]
    # Three attempts allowed: a refusal is recorded once and never rescheduled.
    async with env.running(waits=(0, 0.05, 0.05), allow=[]) as d:
        await env.publish()
        await until(lambda: d.stats.refused == len(REFUSED))
        await asyncio.sleep(0.3)  # time for retries that must not come
    assert env.endpoints["x"].received == []
    assert d.stats.refused == len(REFUSED) and d.stats.exhausted == 0
    for endpoint in added:
        [attempt] = await env.log.attempts(endpoint.id)
        assert attempt.outcome == "refused", attempt
        assert attempt.error and attempt.error.startswith("refused"), attempt.error
        # The endpoint's failure accounting saw it.
        assert (await env.registry.get(endpoint.id)).failing_since is not None


async def test_one_dead_endpoint_leaves_the_others_latency_unchanged(env: Env) -> None:
    healthy = [await env.add(f"ok{i}") for i in range(19)]

    async def latency() -> float:
        """Median time from publish to arrival of 40 messages at the 19 healthy endpoints."""
        for name in (f"ok{i}" for i in range(19)):
            env.endpoints[name].received.clear()
        sent: dict[str, float] = {}
        for _ in range(40):
            [message] = await env.publish()
            sent[message.id] = time.time()
            await asyncio.sleep(0.05)
        await until(lambda: all(len(env.endpoints[f"ok{i}"].received) == 40 for i in range(19)))
        return statistics.median(
            r.at - sent[r.headers["webhook-id"]]
            for i in range(19)
            for r in env.endpoints[f"ok{i}"].received
        )

    async with env.running(waits=(0, 5.0), timeout=2.0):
        before = await latency()
        dead = await env.add("dead", Script(hang=True))
        await asyncio.sleep(0.5)  # the dispatcher re-reads endpoints every 0.2 s
        with_dead = await latency()
        assert env.endpoints["dead"].received, "the dead endpoint was not attempted"
    assert len(healthy) == 19 and dead.enabled
    print(
        f"median latency of 760 deliveries: {before * 1000:.1f} ms without the dead endpoint, "
        f"{with_dead * 1000:.1f} ms with it"
    )
    # A dead endpoint holding the others up would add its 2 s timeout; the margin (half
    # again, plus 50 ms) is for a loaded 2-core machine's scheduling, not for that.
    assert with_dead <= before * 1.5 + 0.05, (before, with_dead)


async def test_exhausted_is_recorded_with_an_event_and_can_be_replayed(env: Env) -> None:
    script = Script([500])
    endpoint = await env.add("down", script)
    events = await env.broker.subscribe(EVENTS_TOPIC, group="t")
    since = time.time() - 1
    async with env.running(waits=(0, 0.1, 0.1)) as d:
        [message] = await env.publish()
        await until(lambda: d.stats.exhausted == 1)
    event = json.loads((await asyncio.wait_for(anext(events), 5)).message.body)
    await events.close()
    assert event["type"] == "webhook.attempt.exhausted"
    assert event["data"]["message_id"] == message.id and event["data"]["attempts"] == 3
    assert [a.outcome for a in await env.log.attempts(endpoint.id)] == [
        "failed",
        "retrying",
        "retrying",
    ]
    [again] = await env.log.to_replay(endpoint.id, since=since)
    assert (again.id, again.topic, again.body) == (message.id, message.topic, message.body)
    script.statuses = [204]
    async with env.running() as d:
        from mqkit.webhooks.replay import replay

        assert await replay(env.broker, env.log, endpoint.id, since=since) == 1
        await until(lambda: d.stats.delivered == 1)
    assert script.received[-1].headers["webhook-id"] == message.id
    assert await env.log.to_replay(endpoint.id, since=since) == []


async def test_failing_for_too_long_disables_the_endpoint(env: Env) -> None:
    endpoint = await env.add("always-500", Script([500]))
    async with env.running(waits=(0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3), disable_after=1.0) as d:
        await env.publish()
        await until(lambda: endpoint.id in d.stats.disabled)
    stored = await env.registry.get(endpoint.id)
    assert not stored.enabled and "failing without a success" in (stored.disabled_reason or "")
    assert [e.enabled for e in await env.registry.list()] == [False]


async def test_the_failure_rate_breaker_disables_the_endpoint(env: Env) -> None:
    endpoint = await env.add("mostly-down", Script([500]))
    breaker = Breaker(window=60, min_attempts=10, failure_rate=0.9)
    async with env.running(waits=(0,), breaker=breaker) as d:
        await env.publish(20)
        await until(lambda: endpoint.id in d.stats.disabled)
    stored = await env.registry.get(endpoint.id)
    assert "circuit breaker" in (stored.disabled_reason or "")


async def test_secret_rotation_has_no_failures_during_the_overlap(env: Env) -> None:
    endpoint = await env.add("rotating")
    old = endpoint.signing_secrets()
    async with env.running() as d:
        await env.publish(20)
        await until(lambda: d.stats.delivered == 20)
        new = Secret.generate()
        await env.registry.rotate_secret(endpoint.id, new, overlap=3600)
        await asyncio.sleep(0.5)  # re-read by the dispatcher
        await env.publish(20)
        await until(lambda: d.stats.delivered == 40)
    received = env.endpoints["rotating"].received
    # A receiver holding only the old secret, and one holding only the new, both accept
    # everything sent after the rotation; before it, only the old one could.
    for r in received[:20]:
        verify(old, r.headers, r.body)
    for r in received[20:]:
        verify(old, r.headers, r.body)
        verify([new], r.headers, r.body)
        assert len(r.headers["webhook-signature"].split(" ")) == 2
    assert d.stats.failed_attempts == 0


async def test_patterns_and_disabled_endpoints(env: Env) -> None:
    a = await env.registry.add(Endpoint(url=env.endpoints.url("a"), topics=[env.topic[:6] + "*"]))
    b = await env.add("b")
    await env.registry.set_enabled(b.id, False, "paused by a test")
    async with env.running() as d:
        await env.publish(3)
        await until(lambda: d.stats.delivered == 3)
        await asyncio.sleep(0.3)
    assert len(env.endpoints["a"].received) == 3 and env.endpoints["b"].received == []
    assert a.matches(env.topic)


async def test_an_endpoints_rate_limit_paces_its_deliveries(env: Env) -> None:
    script = Script([200])
    await env.add("paced", script, rate_limit=20.0)  # a second's worth (20) at once, then 20/s
    async with env.running() as d:
        await env.publish(60)
        await until(lambda: d.stats.delivered == 60)
    times = sorted(r.at for r in script.received)
    took = times[-1] - times[0]
    assert 1.8 <= took <= 2.6, took  # the 40 after the burst at 20/s
    assert sum(t - times[0] < 1.0 for t in times) <= 41


async def test_a_stalled_lanes_queue_is_deferred_to_the_broker(env: Env) -> None:
    """An endpoint that stops answering holds its one slot; once the attempts waiting for
    it would take over a second to drain, newly arriving ones go to the broker as delayed
    retries instead of piling up in memory, and are delivered when it answers again."""
    script = Script(hang=True)
    endpoint = await env.add("stalled", script, max_concurrency=1)
    async with env.running(timeout=1.0) as d:
        sent = await env.publish(5)  # one in the slot, hanging; four waiting for it
        await until(lambda: endpoint.id in d._lanes and d._lanes[endpoint.id].waiting == 4)
        lane = d._lanes[endpoint.id]
        await until(lambda: lane.queue_drain_time() > 1.0)  # judged stalled
        script.hang = False  # from now on it answers; the lane does not know yet
        for _ in range(20):
            sent += await env.publish(1)
        await until(lambda: d.stats.deferred == 20)
        assert lane.waiting <= 4  # the 20 went to the broker, not into memory
        await until(lambda: d.stats.delivered == 25, timeout=60)
    assert {r.headers["webhook-id"] for r in script.received} == {m.id for m in sent}


async def test_stopping_lets_an_endpoint_refresh_in_flight_finish(env: Env) -> None:
    # A SQLite read cancelled midway leaves its connection holding the file's shared lock
    # until it is garbage-collected, and the attempt log cannot commit meanwhile ("database
    # is locked" after the busy timeout): stopping must not cancel the refresh in a read.
    await env.add("ok")
    read = env.registry.list
    calls = 0
    gate = Gate()

    async def slow() -> list[Endpoint]:
        nonlocal calls
        calls += 1
        if calls > 1:  # a refresh, not the first read
            await gate.hold()
        return await read()

    env.registry.list = slow  # type: ignore[method-assign]

    async def release_once_stopping(d: Dispatcher) -> None:
        while d.ready.is_set():  # cleared as run() begins to stop
            await asyncio.sleep(0.01)
        gate.open()

    async with env.running() as d:
        await asyncio.wait_for(gate.reached.wait(), 30)
        releasing = asyncio.create_task(release_once_stopping(d))
    await releasing
    assert gate.outcome == ["finished"]
