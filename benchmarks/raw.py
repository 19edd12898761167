"""The same workloads on the raw clients, to measure what mqkit costs on top of them.

Each class does, with its client used the way its documentation suggests, what run.py does
through mqkit: single awaited publishes, batched publishes, one consumer acking every message,
and end-to-end latency at a fixed rate.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any, Protocol
from urllib.parse import urlsplit

BODY = b"x" * 100


class Raw(Protocol):
    async def single(self, n: int) -> float: ...

    async def batched(self, n: int, batch: int) -> tuple[float, str]: ...

    async def consume(self, where: str, n: int, prefetch: int) -> float: ...

    async def batch_consume(self, where: str, n: int, batch: int) -> float: ...

    async def latency(self, rate: float, seconds: float) -> tuple[float, float]: ...


def _name(kind: str) -> str:
    return f"raw-{kind}-{uuid.uuid4().hex[:8]}"


def _quantiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]


async def _paced(rate: float, seconds: float, send: Any) -> None:
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send()


class RawRedis:
    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url.split("?")[0])

    async def single(self, n: int) -> float:
        stream = _name("single")
        start = time.perf_counter()
        for _ in range(n):
            await self.client.xadd(stream, {b"body": BODY})
        return n / (time.perf_counter() - start)

    async def batched(self, n: int, batch: int) -> tuple[float, str]:
        stream = _name("batch")
        await self.client.xgroup_create(stream, "bench", id="0", mkstream=True)
        start = time.perf_counter()
        for _ in range(0, n, batch):
            pipe = self.client.pipeline(transaction=False)
            for _ in range(batch):
                pipe.xadd(stream, {b"body": BODY})
            await pipe.execute()
        return n / (time.perf_counter() - start), stream

    async def consume(self, where: str, n: int, prefetch: int) -> float:
        start = time.perf_counter()
        seen = 0
        while seen < n:
            response = await self.client.xreadgroup(
                "bench", "c1", {where: ">"}, count=prefetch, block=1000
            )
            for _, entries in response:
                ids = [entry_id for entry_id, _ in entries]
                seen += len(ids)
                await self.client.xack(where, "bench", *ids)
        return n / (time.perf_counter() - start)

    async def batch_consume(self, where: str, n: int, batch: int) -> float:
        """Reads of `batch` entries, each acked with one XACK (what consume does already)."""
        return await self.consume(where, n, batch)

    async def latency(self, rate: float, seconds: float) -> tuple[float, float]:
        stream = _name("latency")
        await self.client.xgroup_create(stream, "bench", id="$", mkstream=True)
        total = int(rate * seconds)
        samples: list[float] = []

        async def consume() -> None:
            while len(samples) < total:
                response = await self.client.xreadgroup(
                    "bench", "c1", {stream: ">"}, count=100, block=1000
                )
                for _, entries in response:
                    for entry_id, fields in entries:
                        samples.append((time.time() - float(fields[b"sent"])) * 1000)
                        await self.client.xack(stream, "bench", entry_id)

        consumer = asyncio.create_task(consume())
        await _paced(
            rate,
            seconds,
            lambda: self.client.xadd(stream, {b"body": BODY, b"sent": repr(time.time())}),
        )
        await asyncio.wait_for(consumer, 60)
        return _quantiles(samples)

    async def close(self) -> None:
        await self.client.aclose()


class RawRabbit:
    def __init__(self, url: str) -> None:
        self.url = url.split("?")[0]
        self.connection: Any = None
        self.channel: Any = None

    async def _open(self) -> Any:
        import aio_pika

        if self.connection is None:
            self.connection = await aio_pika.connect_robust(self.url)
            self.channel = await self.connection.channel(publisher_confirms=True)
        return aio_pika

    async def _queue(self, name: str) -> Any:
        await self._open()
        return await self.channel.declare_queue(name, durable=True)

    def _message(self, body: bytes = BODY, **headers: Any) -> Any:
        import aio_pika

        return aio_pika.Message(
            body, headers=headers or None, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )

    async def single(self, n: int) -> float:
        queue = await self._queue(_name("single"))
        start = time.perf_counter()
        for _ in range(n):
            await self.channel.default_exchange.publish(self._message(), queue.name)
        return n / (time.perf_counter() - start)

    async def batched(self, n: int, batch: int) -> tuple[float, str]:
        queue = await self._queue(_name("batch"))
        start = time.perf_counter()
        for _ in range(0, n, batch):
            await asyncio.gather(
                *(
                    self.channel.default_exchange.publish(self._message(), queue.name)
                    for _ in range(batch)
                )
            )
        return n / (time.perf_counter() - start), queue.name

    async def consume(self, where: str, n: int, prefetch: int) -> float:
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(where, durable=True)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: Any) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == n:
                done.set()

        start = time.perf_counter()
        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 300)
        rate = n / (time.perf_counter() - start)
        await queue.cancel(tag)
        await channel.close()
        return rate

    async def batch_consume(self, where: str, n: int, batch: int) -> float:
        """Every `batch`-th message acks itself and those before it (`multiple=True`)."""
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=batch * 2)
        queue = await channel.declare_queue(where, durable=True)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: Any) -> None:
            nonlocal seen
            seen += 1
            if seen % batch == 0 or seen == n:
                await message.ack(multiple=True)
            if seen == n:
                done.set()

        start = time.perf_counter()
        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 300)
        rate = n / (time.perf_counter() - start)
        await queue.cancel(tag)
        await channel.close()
        return rate

    async def latency(self, rate: float, seconds: float) -> tuple[float, float]:
        queue = await self._queue(_name("latency"))
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=100)
        total = int(rate * seconds)
        samples: list[float] = []
        done = asyncio.Event()

        async def on_message(message: Any) -> None:
            samples.append((time.time() - float(message.headers["sent"])) * 1000)
            await message.ack()
            if len(samples) == total:
                done.set()

        consumer_queue = await channel.declare_queue(queue.name, durable=True)
        await consumer_queue.consume(on_message)
        await _paced(
            rate,
            seconds,
            lambda: self.channel.default_exchange.publish(
                self._message(sent=repr(time.time())), queue.name
            ),
        )
        await asyncio.wait_for(done.wait(), 60)
        await channel.close()
        return _quantiles(samples)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


class RawKafka:
    def __init__(self, url: str) -> None:
        self.bootstrap = urlsplit(url).netloc
        self.producer: Any = None

    async def _producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        if self.producer is None:
            # mqkit's producer settings; linger_ms is aiokafka's default, 0.
            self.producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all"
            )
            await self.producer.start()
        return self.producer

    async def _topic(self, kind: str) -> str:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        name = _name(kind)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(name, 6, 1)])
        await admin.close()
        return name

    async def single(self, n: int) -> float:
        producer = await self._producer()
        topic = await self._topic("single")
        start = time.perf_counter()
        for _ in range(n):
            await producer.send_and_wait(topic, BODY)
        return n / (time.perf_counter() - start)

    async def batched(self, n: int, batch: int) -> tuple[float, str]:
        producer = await self._producer()
        topic = await self._topic("batch")
        start = time.perf_counter()
        for _ in range(0, n, batch):
            futures = [await producer.send(topic, BODY) for _ in range(batch)]
            await asyncio.gather(*futures)
        return n / (time.perf_counter() - start), topic

    async def _consumer(self, topic: str, reset: str, prefetch: int) -> Any:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            group_id="bench",
            enable_auto_commit=False,
            auto_offset_reset=reset,
            max_poll_records=prefetch,
        )
        await consumer.start()
        return consumer

    async def consume(self, where: str, n: int, prefetch: int) -> float:
        consumer = await self._consumer(where, "earliest", prefetch)
        start = time.perf_counter()
        seen = 0
        last_commit = time.monotonic()
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=prefetch)
            seen += sum(len(records) for records in batches.values())
            if time.monotonic() - last_commit > 0.5:
                await consumer.commit()
                last_commit = time.monotonic()
        await consumer.commit()
        rate = n / (time.perf_counter() - start)
        await consumer.stop()
        return rate

    async def batch_consume(self, where: str, n: int, batch: int) -> float:
        """getmany() of up to `batch` records, and one offset commit for each."""
        consumer = await self._consumer(where, "earliest", batch)
        start = time.perf_counter()
        seen = 0
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=batch)
            seen += sum(len(records) for records in batches.values())
            if batches:
                await consumer.commit()
        rate = n / (time.perf_counter() - start)
        await consumer.stop()
        return rate

    async def latency(self, rate: float, seconds: float) -> tuple[float, float]:
        producer = await self._producer()
        topic = await self._topic("latency")
        consumer = await self._consumer(topic, "latest", 100)
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event for it
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)
        total = int(rate * seconds)
        samples: list[float] = []

        async def consume() -> None:
            while len(samples) < total:
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for record in records:
                        samples.append((time.time() - float(dict(record.headers)["sent"])) * 1000)
                await consumer.commit()

        task = asyncio.create_task(consume())
        await _paced(
            rate,
            seconds,
            lambda: producer.send_and_wait(
                topic, BODY, headers=[("sent", repr(time.time()).encode())]
            ),
        )
        await asyncio.wait_for(task, 60)
        await consumer.stop()
        return _quantiles(samples)

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


def for_url(url: str) -> Any:
    scheme = url.split("://", 1)[0]
    if scheme in ("redis", "rediss"):
        return RawRedis(url)
    if scheme in ("amqp", "amqps"):
        return RawRabbit(url)
    if scheme == "kafka":
        return RawKafka(url)
    raise SystemExit(f"no raw client benchmark for {scheme}://")
