"""The worker app on the in-memory backend: decoding, retries, DLQ, middleware, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pydantic
import pytest

import mqkit
from mqkit.middleware import CallNext, Context, Middleware
from tests.support.waiting import receive


class Order(pydantic.BaseModel):
    id: int
    amount: float = pydantic.Field(gt=0)


@pytest.fixture
async def broker() -> AsyncIterator[mqkit.Broker]:
    async with mqkit.connect("memory://") as b:
        yield b


async def until(condition: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_poison_message_goes_to_dlq_and_the_rest_flow(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker)
    handled: list[int] = []

    @app.subscriber("orders", group="billing", concurrency=4)
    async def bill(order: Order) -> None:
        handled.append(order.id)

    dlq = await broker.subscribe("orders.dlq", group="ops")
    async with app.running():
        for i in range(1000):
            payload = {"id": i, "amount": -1} if i == 500 else {"id": i, "amount": 1}
            await broker.publish("orders", payload)
        await until(lambda: len(handled) == 999)
        (dead,) = await receive(dlq, 1)
    assert sorted(handled) == [i for i in range(1000) if i != 500]
    assert dead.message.decode(dict)["id"] == 500
    assert dead.message.headers["mqkit-error"].startswith("DecodeError: body does not validate")
    assert dead.message.headers["mqkit-group"] == "billing"
    await dlq.close()


async def test_failures_retry_then_succeed(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker, retry=mqkit.RetryPolicy(base_delay=0.01, max_delay=0.05))
    attempts: dict[int, list[int]] = {}

    @app.subscriber("jobs", group="g", concurrency=8)
    async def job(body: dict[str, int], message: mqkit.Message) -> None:
        attempts.setdefault(body["n"], []).append(message.attempt)
        if body["n"] % 10 == 0 and message.attempt <= 2:
            raise ConnectionError("downstream flaked")

    async with app.running():
        for n in range(100):
            await broker.publish("jobs", {"n": n})
        await until(
            lambda: (
                len(attempts) == 100 and all(a[-1] == 3 for n, a in attempts.items() if n % 10 == 0)
            )
        )
    stats = app.subscribers[0].stats
    assert stats.handled == 100 and stats.dead_lettered == 0 and stats.retried == 20
    assert attempts[10] == [1, 2, 3] and attempts[11] == [1]


async def test_exhausted_retries_dead_letter_with_the_error(broker: mqkit.Broker) -> None:
    policy = mqkit.RetryPolicy(max_attempts=3, base_delay=0.01, jitter=False)
    app = mqkit.App(broker=broker, retry=policy)
    seen: list[int] = []

    @app.subscriber("jobs", group="g")
    async def job(message: mqkit.Message) -> None:
        seen.append(message.attempt)
        raise ValueError("always broken")

    dlq = await broker.subscribe("jobs.dlq", group="ops")
    async with app.running():
        await broker.publish("jobs", "x")
        (dead,) = await receive(dlq, 1)
    assert seen == [1, 2, 3]
    assert dead.message.headers["mqkit-error"] == "ValueError: always broken"
    assert dead.message.headers["mqkit-attempts"] == "3"
    await dlq.close()


async def test_handler_can_ask_for_a_delay_or_the_dlq(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker)
    times: list[float] = []

    @app.subscriber("later", group="g")
    async def later(message: mqkit.Message) -> None:
        times.append(time.monotonic())
        if message.attempt == 1:
            raise mqkit.Retry(delay=0.3)

    @app.subscriber("never", group="g2")
    async def never(body: bytes) -> None:
        raise mqkit.Reject("not for us")

    dlq = await broker.subscribe("never.dlq", group="ops")
    async with app.running():
        await broker.publish("later", "x")
        await broker.publish("never", "y")
        await until(lambda: len(times) == 2)
        (dead,) = await receive(dlq, 1)
    # Never early; late only by scheduling, with room for a loaded 2-core machine.
    assert 0.3 <= times[1] - times[0] < 0.3 + 1.0
    assert dead.message.headers["mqkit-error"] == "Reject: not for us"
    await dlq.close()


async def test_an_explicit_retry_is_an_attempt_and_ends_in_the_dlq(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker, retry=mqkit.RetryPolicy(max_attempts=3))
    attempts: list[int] = []

    @app.subscriber("busy", group="g")
    async def busy(message: mqkit.Message) -> None:
        attempts.append(message.attempt)
        raise mqkit.Retry(delay=0.01, reason="downstream said 429")

    dlq = await broker.subscribe("busy.dlq", group="ops")
    async with app.running():
        await broker.publish("busy", "x")
        (dead,) = await receive(dlq, 1)
        await asyncio.sleep(0.2)  # a fourth attempt, if one were coming, runs by now
    assert attempts == [1, 2, 3]
    assert dead.message.headers["mqkit-error"] == "Retry: downstream said 429"
    assert dead.message.headers["mqkit-attempts"] == "3"
    stats = app.subscribers[0].stats
    assert (stats.retried, stats.dead_lettered) == (2, 1)
    await dlq.close()


async def test_middleware_wraps_in_order_and_sees_errors(broker: mqkit.Broker) -> None:
    trail: list[str] = []

    def named(name: str) -> Middleware:
        async def mw(ctx: Context, call_next: CallNext) -> None:
            trail.append(f"{name}>")
            try:
                await call_next(ctx)
            except Exception as exc:
                trail.append(f"{name}!{type(exc).__name__}")
                raise
            trail.append(f"<{name}")

        return mw

    app = mqkit.App(
        broker=broker, middleware=[named("outer")], retry=mqkit.RetryPolicy(max_attempts=1)
    )
    app.add_middleware(named("app"))

    @app.subscriber("t", group="g", middleware=[named("sub")])
    async def handler(ctx: Context, body: str) -> None:
        trail.append(f"handler:{body}:{ctx.group}")
        if body == "boom":
            raise RuntimeError(body)

    async with app.running():
        await broker.publish("t", "ok")
        await until(lambda: "<outer" in trail)
        trail.append("|")
        await broker.publish("t", "boom")
        await until(lambda: "outer!RuntimeError" in trail)
    assert trail == [
        "outer>",
        "app>",
        "sub>",
        "handler:ok:g",
        "<sub",
        "<app",
        "<outer",
        "|",
        "outer>",
        "app>",
        "sub>",
        "handler:boom:g",
        "sub!RuntimeError",
        "app!RuntimeError",
        "outer!RuntimeError",
    ]


async def test_concurrency_is_honoured(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker)
    running = peak = done = 0

    @app.subscriber("t", group="g", concurrency=5)
    async def slow(body: bytes) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        done += 1

    async with app.running():
        await broker.publish_batch([mqkit.Message.create("t", b"") for _ in range(60)])
        await until(lambda: done == 60)
    assert peak == 5


async def test_graceful_shutdown_finishes_in_flight_and_hands_back_the_rest() -> None:
    async with mqkit.connect("memory://shutdown-test") as broker:
        app = mqkit.App(broker=broker, shutdown_timeout=0.5)
        started: list[str] = []
        finished: list[str] = []

        @app.subscriber("t", group="g", concurrency=4)
        async def work(body: str, message: mqkit.Message) -> None:
            started.append(message.id)
            await asyncio.sleep(0.2 if body == "quick" else 5.0)
            finished.append(message.id)

        quick = [mqkit.Message.create("t", "quick") for _ in range(2)]
        slow = [mqkit.Message.create("t", "slow") for _ in range(2)]
        await broker.publish_batch(quick + slow)
        async with app.running():
            await until(lambda: len(started) == 4)
        # Stopped: quick ones finished and were acked; slow ones were cut off at 0.5 s.
        assert sorted(finished) == sorted(m.id for m in quick)
        async with await broker.subscribe("t", group="g") as sub:
            back = await receive(sub, 2)
        assert sorted(d.message.id for d in back) == sorted(m.id for m in slow)


async def test_hooks_run_and_default_group_is_stable(broker: mqkit.Broker) -> None:
    app = mqkit.App(broker=broker)
    events: list[str] = []

    @app.on_startup
    async def up() -> None:
        events.append("up")

    @app.on_shutdown
    async def down() -> None:
        events.append("down")

    @app.subscriber("t")
    async def handler(body: bytes) -> None:
        events.append("msg")

    assert app.subscribers[0].group.endswith(
        "test_hooks_run_and_default_group_is_stable.<locals>.handler"
    )
    async with app.running():
        await broker.publish("t", b"")
        await until(lambda: "msg" in events)
    assert events == ["up", "msg", "down"]


def test_handler_must_be_async_and_unambiguous() -> None:
    app = mqkit.App("memory://")
    with pytest.raises(TypeError, match="async"):
        app.subscriber("t")(lambda body: None)

    async def two_bodies(a: bytes, b: bytes) -> None: ...

    with pytest.raises(TypeError, match="only one parameter"):
        app.subscriber("t")(two_bodies)
    with pytest.raises(mqkit.InvalidTopicError):
        app.subscriber("bad topic")


async def test_app_with_url_owns_its_broker(tmp_path: object) -> None:
    app = mqkit.App("memory://owned")
    got: list[bytes] = []

    @app.subscriber("t", group="g")
    async def handler(body: bytes) -> None:
        got.append(body)

    async with app.running():
        await app.publish("t", b"hi")
        await until(lambda: got == [b"hi"])
    with pytest.raises(RuntimeError, match="not running"):
        _ = app.broker


async def test_ctx_publish_sends_through_the_deliverys_broker(broker: mqkit.Broker) -> None:
    """Not exactly-once (memory claims no transactions): out at once, as broker.publish."""
    app = mqkit.App(broker=broker)

    @app.subscriber("in", group="copier")
    async def copy(ctx: Context, body: str) -> None:
        await ctx.publish("out", body.upper(), key=ctx.message.key)

    out = await broker.subscribe("out", group="check")
    async with app.running():
        await broker.publish("in", "hello", key="k1")
        (copied,) = await receive(out, 1)
    assert (copied.message.body, copied.message.key) == (b"HELLO", "k1")
    await out.close()
    with pytest.raises(RuntimeError, match="delivery"):
        await Context(copied.message, "in", "copier").publish("out", b"x")


def test_exactly_once_cannot_take_a_batch() -> None:
    app = mqkit.App("memory://")
    with pytest.raises(ValueError, match="exactly_once=True handles one message at a time"):
        app.subscriber("in", batch=10, exactly_once=True)
