"""The main job (`mqkit demo`), on the configured broker (the embedded default unless told).

Publishes a batch of orders, runs a worker app that processes and acks them, retries one
whose handler fails twice, and dead-letters one whose body is invalid, with a live view.
It finishes by itself and says what happened.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

from pydantic import BaseModel, Field
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from mqkit.broker import Broker
from mqkit.message import Message
from mqkit.registry import connect
from mqkit.retry import RetryPolicy
from mqkit.worker import App, Stats


class Order(BaseModel):
    id: int
    customer: str
    amount: float = Field(gt=0)


class _Flaky(Exception):
    """The failure the demo injects: a payment service that is down for a moment."""


def _view(stats: Stats, total: int, started: float, progress: Progress) -> Group:
    elapsed = max(time.monotonic() - started, 1e-6)
    table = Table.grid(padding=(0, 2))
    table.add_row("handled", f"[green]{stats.handled}")
    table.add_row("retried", f"[yellow]{stats.retried}")
    table.add_row("dead-lettered", f"[red]{stats.dead_lettered}")
    table.add_row("in flight", str(stats.in_flight))
    table.add_row("rate", f"{stats.handled / elapsed:,.0f} msg/s")
    return Group(progress, Panel(table, title="worker", expand=False))


async def orders_demo(url: str | None, orders: int = 500, concurrency: int = 8) -> None:
    """The demo on `url` (None: the configured broker); TimeoutError if it does not finish."""
    console = Console()
    run_id = uuid.uuid4().hex[:8]
    topic = f"demo-{run_id}.orders"
    flaky_id = random.randrange(orders)
    failures: dict[int, int] = {}

    broker = await connect(url).start()
    # The facts go out unwrapped (soft_wrap): a script or a narrow terminal reading this
    # output must find "succeeded after 2 retries" on one line.
    console.print(f"broker [bold]{broker.safe_url}[/]  topic [bold]{topic}[/]", soft_wrap=True)
    app = App(
        broker=broker,
        retry=RetryPolicy(max_attempts=5, base_delay=0.2, max_delay=1.0),
        shutdown_timeout=5.0,
    )

    @app.subscriber(topic, group="demo-billing", concurrency=concurrency)
    async def bill(order: Order, message: Message) -> None:
        if order.id == flaky_id and failures.get(order.id, 0) < 2:
            failures[order.id] = failures.get(order.id, 0) + 1
            raise _Flaky(f"payment service unavailable (attempt {message.attempt})")
        await asyncio.sleep(0.002)  # the work

    stats = app.subscribers[0].stats
    try:
        batch = [
            Message.create(
                topic, Order(id=i, customer=f"c{i % 17}", amount=10 + i % 90), key=f"c{i % 17}"
            )
            for i in range(orders - 1)
        ]
        # One order with a negative amount: it cannot validate, so it is dead-lettered.
        batch.append(Message.create(topic, {"id": orders - 1, "customer": "x", "amount": -5}))
        progress = Progress(TextColumn("orders"), BarColumn(), MofNCompleteColumn())
        task = progress.add_task("orders", total=orders)
        started = time.monotonic()
        async with app.running():
            await broker.publish_batch(batch)
            with Live(_view(stats, orders, started, progress), console=console) as live:
                deadline = time.monotonic() + 120
                while stats.handled + stats.dead_lettered < orders:
                    if time.monotonic() > deadline:
                        raise TimeoutError("demo did not finish within 120 s")
                    progress.update(task, completed=stats.handled + stats.dead_lettered)
                    live.update(_view(stats, orders, started, progress))
                    await asyncio.sleep(0.1)
                progress.update(task, completed=orders)
                live.update(_view(stats, orders, started, progress))
        elapsed = time.monotonic() - started
        dead = await _first_dead_letter(broker, topic)
    finally:
        await broker.close()
    console.print(
        f"[green]done[/]: {stats.handled} handled in {elapsed:.2f}s; order {flaky_id} "
        f"succeeded after {failures.get(flaky_id, 0)} retries; "
        f"{stats.dead_lettered} dead-lettered to {topic}.dlq",
        soft_wrap=True,
    )
    if dead is not None:
        console.print(f"dead letter {dead.id}: {dead.headers.get('mqkit-error')}", soft_wrap=True)


async def _first_dead_letter(broker: Broker, topic: str) -> Message | None:
    async with await broker.subscribe(topic + ".dlq", start="earliest") as dlq:
        try:
            delivery = await asyncio.wait_for(anext(dlq), 5)
        except TimeoutError:
            return None
        await delivery.nack()  # leave it there for `mqkit consume ... .dlq`
        return delivery.message
