"""The same workloads through FastStream (a dev dependency only), the peer library that
`benchmarks.run --faststream` puts beside mqkit and the raw client in one run.

FastStream gets mqkit's durability, so that a row compares like with like:
- Kafka: `acks="all"` and `enable_idempotence=True` on its producer (its defaults are acks=1
  without idempotence); its subscriber commits after the handler (`AckPolicy.ACK`, offsets
  not auto-committed).
- RabbitMQ: a durable queue, persistent messages (`persist=True`; its default is transient)
  on a channel with publisher confirms (aio-pika's default, which FastStream keeps); the
  subscriber acks after the handler, with the same prefetch as mqkit's.
- Redis Streams: a consumer group read with XREADGROUP and XACKed after the handler; Redis
  has no more durability to ask for on either side. A batch is a pipeline of XADDs, as
  FastStream documents for streams (its `publish_batch` writes lists only).

Each subscriber drains `n` waiting messages with `AckPolicy.ACK` (at-least-once: acked once
the handler returned) and `max_workers` as mqkit's `concurrency` (Kafka, Redis).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Protocol
from urllib.parse import urlsplit

BODY = b"x" * 100


class Peer(Protocol):
    async def single(self, n: int) -> float: ...

    async def batched(self, n: int, batch: int) -> float: ...

    async def subscriber(self, n: int, batch: int, concurrency: int, prefetch: int) -> float: ...


def _name(kind: str) -> str:
    return f"fs-{kind}-{uuid.uuid4().hex[:8]}"


async def _timed_publishes(n: int, publish: Any) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await publish()
    return n / (time.perf_counter() - start)


async def _drain(broker: Any, subscribe: Any, n: int) -> float:
    """Start `broker` with the handler `subscribe` registers, and time it to handle n."""
    from faststream.middlewares import AckPolicy

    done = asyncio.Event()
    seen = 0

    async def handle(body: bytes) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    subscribe(AckPolicy.ACK)(handle)
    start = time.perf_counter()
    await broker.start()
    try:
        await done.wait()
        return n / (time.perf_counter() - start)
    finally:
        await broker.stop()


class FastStreamKafka:
    def __init__(self, url: str) -> None:
        self.servers = urlsplit(url).netloc.split(",")

    def _broker(self) -> Any:
        from faststream.kafka import KafkaBroker

        # Its publish_batch is one aiokafka batch, which must fit max_batch_size (16 KiB by
        # default: about 100 of these records); 1 MiB holds the benchmark's 500.
        return KafkaBroker(
            self.servers,
            acks="all",
            enable_idempotence=True,
            max_batch_size=1024 * 1024,
            logger=None,
        )

    async def single(self, n: int) -> float:
        topic = _name("single")
        broker = self._broker()
        async with broker:
            await broker.start()
            await broker.publish(BODY, topic)  # creates the topic, outside the timing
            return await _timed_publishes(n, lambda: broker.publish(BODY, topic))

    async def _fill(self, topic: str, n: int, batch: int) -> float:
        broker = self._broker()
        async with broker:
            await broker.start()
            await broker.publish(BODY, topic)  # creates the topic; the drain reads it too
            start = time.perf_counter()
            for first in range(0, n, batch):
                size = min(batch, n - first)
                await broker.publish_batch(*([BODY] * size), topic=topic)
            return n / (time.perf_counter() - start)

    async def batched(self, n: int, batch: int) -> float:
        return await self._fill(_name("batch"), n, batch)

    async def subscriber(self, n: int, batch: int, concurrency: int, prefetch: int) -> float:
        topic = _name("sub")
        await self._fill(topic, n - 1, batch)  # and the one that created the topic
        broker = self._broker()
        workers = {"max_workers": concurrency} if concurrency > 1 else {}
        return await _drain(
            broker,
            lambda ack: broker.subscriber(
                topic,
                group_id="bench",
                auto_offset_reset="earliest",
                max_records=prefetch,
                ack_policy=ack,
                **workers,
            ),
            n,
        )


class FastStreamRedis:
    def __init__(self, url: str) -> None:
        self.url = url.split("?")[0]

    def _broker(self) -> Any:
        from faststream.redis import RedisBroker

        return RedisBroker(self.url, logger=None)

    async def single(self, n: int) -> float:
        stream = _name("single")
        broker = self._broker()
        async with broker:
            await broker.start()
            return await _timed_publishes(n, lambda: broker.publish(BODY, stream=stream))

    async def _fill(self, stream: str, n: int, batch: int) -> float:
        broker = self._broker()
        async with broker:
            await broker.start()
            start = time.perf_counter()
            for first in range(0, n, batch):
                # The client FastStream injects into handlers as `Redis`.
                async with broker._connection.pipeline(transaction=False) as pipe:
                    for _ in range(min(batch, n - first)):
                        await broker.publish(BODY, stream=stream, pipeline=pipe)
                    await pipe.execute()
            return n / (time.perf_counter() - start)

    async def batched(self, n: int, batch: int) -> float:
        return await self._fill(_name("batch"), n, batch)

    async def subscriber(self, n: int, batch: int, concurrency: int, prefetch: int) -> float:
        from faststream.redis import StreamSub

        stream = _name("sub")
        broker = self._broker()
        async with broker:
            await broker.start()
            # The group reads from the start of the stream, so it may be made after the fill.
            await broker._connection.xgroup_create(stream, "bench", id="0", mkstream=True)
        await self._fill(stream, n, batch)
        broker = self._broker()
        workers = {"max_workers": concurrency} if concurrency > 1 else {}
        source = StreamSub(stream, group="bench", consumer="c1", max_records=prefetch)
        return await _drain(
            broker, lambda ack: broker.subscriber(stream=source, ack_policy=ack, **workers), n
        )


class FastStreamRabbit:
    def __init__(self, url: str) -> None:
        self.url = url

    def _broker(self) -> Any:
        from faststream.rabbit import RabbitBroker

        return RabbitBroker(self.url, logger=None)

    async def _declared(self, broker: Any, name: str) -> None:
        from faststream.rabbit import RabbitQueue

        await broker.declare_queue(RabbitQueue(name, durable=True))

    async def single(self, n: int) -> float:
        queue = _name("single")
        broker = self._broker()
        async with broker:
            await broker.start()
            await self._declared(broker, queue)
            return await _timed_publishes(
                n, lambda: broker.publish(BODY, queue=queue, persist=True)
            )

    async def _fill(self, queue: str, n: int, batch: int) -> float:
        """RabbitMQ has no batch publish: `batch` persistent publishes at a time, each
        confirmed, as mqkit's own batch does."""
        broker = self._broker()
        async with broker:
            await broker.start()
            await self._declared(broker, queue)
            start = time.perf_counter()
            for first in range(0, n, batch):
                await asyncio.gather(
                    *(
                        broker.publish(BODY, queue=queue, persist=True)
                        for _ in range(min(batch, n - first))
                    )
                )
            return n / (time.perf_counter() - start)

    async def batched(self, n: int, batch: int) -> float:
        return await self._fill(_name("batch"), n, batch)

    async def subscriber(self, n: int, batch: int, concurrency: int, prefetch: int) -> float:
        from faststream.rabbit import Channel, RabbitQueue

        queue = _name("sub")
        await self._fill(queue, n, batch)
        broker = self._broker()
        # Its RabbitMQ subscriber takes no max_workers: the prefetch is all there is to set.
        return await _drain(
            broker,
            lambda ack: broker.subscriber(
                RabbitQueue(queue, durable=True),
                channel=Channel(prefetch_count=prefetch),
                ack_policy=ack,
            ),
            n,
        )


def for_url(url: str) -> Peer:
    scheme = urlsplit(url).scheme
    if scheme == "kafka":
        return FastStreamKafka(url)
    if scheme == "redis":
        return FastStreamRedis(url)
    if scheme == "amqp":
        return FastStreamRabbit(url)
    raise SystemExit(f"--faststream: no FastStream broker for {scheme}:// (kafka, amqp, redis)")
