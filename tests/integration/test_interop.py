"""mqkit and the brokers' own tools read each other's messages, bodies intact.

kcat for Kafka, amqp-consume/amqp-publish (Debian's amqp-tools) for RabbitMQ, redis-cli for
Redis Streams and pub/sub: all installed by scripts/services.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import mqkit
from tests.support.services import URLS

BODY = 'h\u00e9llo wörld {"n": 1}'


def topic() -> str:
    return f"interop-{uuid.uuid4().hex[:10]}"


async def run(*argv: str, stdin: bytes | None = None, timeout: float = 30) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    assert process.returncode == 0, err.decode()
    return out


async def first(sub: mqkit.Subscription) -> mqkit.Message:
    delivery = await asyncio.wait_for(anext(sub), 30)
    await delivery.ack()
    return delivery.message


# -- Kafka ------------------------------------------------------------------------------------

KAFKA = "127.0.0.1:9092"


async def test_kcat_reads_what_mqkit_publishes() -> None:
    t = topic()
    async with mqkit.connect(URLS["kafka"]) as broker:
        sent = await broker.publish(t, BODY, key="k1", headers={"origin": "mqkit"})
    out = await run(
        "kcat", "-C", "-b", KAFKA, "-t", t, "-o", "beginning", "-c", "1", "-e", "-f", "%k\n%s\n%h\n"
    )
    key, body, headers = out.decode().split("\n")[:3]
    assert key == "k1" and body == BODY
    assert f"mqkit-id={sent.id}" in headers and "origin=mqkit" in headers


async def test_mqkit_reads_what_kcat_produces() -> None:
    t = topic()
    async with mqkit.connect(URLS["kafka"]) as broker:
        sub = await broker.subscribe(t, group="interop")
        await run(
            "kcat", "-P", "-b", KAFKA, "-t", t, "-k", "k2", "-H", "h=v", stdin=BODY.encode() + b"\n"
        )
        message = await first(sub)
        await sub.close()
    assert message.body == BODY.encode() and message.key == "k2"
    assert message.headers == {"h": "v"} and message.attempt == 1


# -- RabbitMQ ---------------------------------------------------------------------------------

AMQP = URLS["rabbitmq"]  # the command-line tools take the same URL, virtual host included


async def test_amqp_consume_reads_what_mqkit_publishes() -> None:
    t = topic()
    async with mqkit.connect(URLS["rabbitmq"]) as broker:
        await broker.publish(t, "declare the exchange first")
        reader = await asyncio.create_subprocess_exec(
            "amqp-consume",
            f"--url={AMQP}",
            "-e",
            t,
            "-r",
            "#",
            "-c",
            "1",
            "cat",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Its queue is bound only once it listens, and an exchange keeps nothing for no
        # queue: publish until it has read one (-c 1), which is the readiness it offers.
        finished = asyncio.ensure_future(reader.communicate())
        async with asyncio.timeout(30):
            while not finished.done():
                await broker.publish(t, BODY, key="k1")
                await asyncio.wait({finished}, timeout=0.2)
        out, err = await finished
    assert reader.returncode == 0, err.decode()
    assert out.decode() == BODY


async def test_mqkit_reads_what_amqp_publish_sends() -> None:
    t = topic()
    async with mqkit.connect(URLS["rabbitmq"]) as broker:
        sub = await broker.subscribe(t, group="interop")
        await run(
            "amqp-publish",
            f"--url={AMQP}",
            "-e",
            t,
            "-r",
            "any.key",
            "-b",
            BODY,
            "-C",
            "text/plain",
        )
        message = await first(sub)
        await sub.close()
    assert message.body == BODY.encode() and message.content_type == "text/plain"
    assert message.decode(str) == BODY


# -- Redis ------------------------------------------------------------------------------------


async def test_redis_cli_reads_stream_entries_mqkit_writes() -> None:
    t = topic()
    async with mqkit.connect(URLS["redis"]) as broker:
        sent = await broker.publish(t, BODY, key="k1", headers={"origin": "mqkit"})
    out = (await run("redis-cli", "-h", "127.0.0.1", "--raw", "XRANGE", t, "-", "+")).decode()
    # --raw prints each field and value on lines of their own
    assert f"\nbody\n{BODY}\n" in out
    assert f"\nmqkit\n{sent.id}\n" in out  # mqkit's metadata field starts with the id
    assert "\nmqkit-key\nk1\n" in out and "\norigin\nmqkit\n" in out


async def test_mqkit_reads_stream_entries_redis_cli_writes() -> None:
    t = topic()
    async with mqkit.connect(URLS["redis"]) as broker:
        sub = await broker.subscribe(t, group="interop")
        await run("redis-cli", "-h", "127.0.0.1", "XADD", t, "*", "body", BODY, "source", "cli")
        message = await first(sub)
        await sub.close()
    assert message.body == BODY.encode() and message.headers == {"source": "cli"}


async def test_pubsub_both_ways_with_redis_cli() -> None:
    channel = topic()
    url = URLS["redis"].replace("redis://", "redis+pubsub://")
    async with mqkit.connect(url) as broker:
        sub = await broker.subscribe(channel)
        await run("redis-cli", "-h", "127.0.0.1", "PUBLISH", channel, BODY)
        assert (await first(sub)).body == BODY.encode()
        await sub.close()

        listener = await asyncio.create_subprocess_exec(
            "redis-cli",
            "-h",
            "127.0.0.1",
            "--raw",
            "SUBSCRIBE",
            channel,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert listener.stdout is not None
        for _ in range(3):  # "subscribe", the channel, the count
            await asyncio.wait_for(listener.stdout.readline(), 10)
        await broker.publish(channel, BODY)
        lines = [await asyncio.wait_for(listener.stdout.readline(), 10) for _ in range(4)]
        listener.kill()
        await listener.wait()
    # message, channel, then the payload: mqkit's meta line and the body unchanged
    assert lines[0].strip() == b"message" and lines[1].strip() == channel.encode()
    assert lines[2].startswith(b"mqkit/1 ") and lines[3].rstrip(b"\n") == BODY.encode()
