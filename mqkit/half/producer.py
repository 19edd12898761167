"""The producer side of half messages: prepare, then commit or roll back.

    producer = HalfProducer(broker, SqlHalfStore(db_url), group="orders-service")

    async with producer.transaction("orders", order, key=order.id) as half:
        await save_order(order)          # the local transaction; raise to roll back
    # committed here: published once, with the id it was prepared with

A prepared message is in the store only; no consumer can see it. `commit()` publishes it
(waiting for the broker's confirm) and records that; `rollback()` drops it. If the producer
dies in between, a checker (mqkit.half.checker) asks the group's check function after the
check timeout and does what it says.

Traced: prepare makes a `create` span whose context the message keeps; the commit (a
`commit` span, or the checker's `check`) and the consumers continue that trace.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from mqkit.broker import Broker, validate_topic
from mqkit.errors import HalfMessageError, MessageTooLargeError
from mqkit.half.store import COMMITTED, COMMITTING, ROLLED_BACK, HalfStore
from mqkit.message import Message
from mqkit.telemetry import tracing

DEFAULT_CHECK_AFTER = 6.0
COMMIT_LEASE = 60.0  # a committer silent this long is presumed dead; a checker finishes


class HalfMessage:
    """A prepared message, and the handle to commit or roll it back (once)."""

    def __init__(self, producer: HalfProducer, message: Message) -> None:
        self.message = message
        self._producer = producer

    @property
    def id(self) -> str:
        return self.message.id

    async def commit(self) -> Message:
        """Make the message visible: publish it and wait for the broker's confirm. Once
        called, the commit stands: if the broker cannot be reached, this raises and a
        checker publishes the message after the commit lease (60 s)."""
        return await self._producer.commit(self.message.id)

    async def rollback(self) -> None:
        await self._producer.rollback(self.message.id)

    def __repr__(self) -> str:
        return f"<HalfMessage {self.message.id} to {self.message.topic}>"


class HalfProducer:
    """Prepares half messages for one producer group, whose checker knows how to check them."""

    def __init__(
        self,
        broker: Broker,
        store: HalfStore,
        *,
        group: str = "default",
        check_after: float = DEFAULT_CHECK_AFTER,
    ) -> None:
        self.broker = broker
        self.store = store
        self.group = group
        self.check_after = check_after

    async def prepare(
        self,
        topic: str,
        payload: Any = b"",
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
        content_type: str | None = None,
        check_after: float | None = None,
    ) -> HalfMessage:
        """Store the message, invisible to consumers. `check_after` (default 6 s) is how long
        a checker waits before asking the check function about it."""
        message = Message.create(
            topic, payload, key=key, headers=headers, id=id, content_type=content_type
        )
        validate_topic(topic)  # bad input fails now, not at commit
        if message.size > self.broker.max_message_bytes:
            raise MessageTooLargeError(message.size, self.broker.max_message_bytes)
        tracer = tracing.tracer()
        if tracer is not None:  # the context the commit, the check-back and consumers continue
            from mqkit.telemetry import spans

            message = spans.created(tracer, message, self._attributes())
        wait = self.check_after if check_after is None else check_after
        await self.store.prepare(self.group, message, time.time() + wait)
        return HalfMessage(self, message)

    async def commit(self, id: str) -> Message:
        holder = f"commit-{uuid.uuid4().hex}"
        message = await self.store.begin_commit(id, holder, COMMIT_LEASE)
        if message is None:
            return await self._already_resolved(id, COMMITTED)
        tracer = tracing.tracer()
        with contextlib.ExitStack() as tracing_it:
            if tracer is not None:
                from mqkit.telemetry import spans

                tracing_it.enter_context(
                    spans.stage(tracer, "commit", message, self._attributes(), own_trace=False)
                )
            await self.broker.send([message], created=True)
            await self.store.finish_commit(id, holder)
        return message

    def _attributes(self) -> dict[str, str | int]:
        return {"messaging.system": self.broker.SYSTEM, "mqkit.half.group": self.group}

    async def rollback(self, id: str) -> None:
        if not await self.store.resolve(id, ROLLED_BACK):
            await self._already_resolved(id, ROLLED_BACK)

    async def _already_resolved(self, id: str, wanted: str) -> Message:
        """A checker got there first: fine if it decided the same way, an error if not."""
        record = await self.store.get(id)
        if record is None:
            raise HalfMessageError(f"half message {id} is unknown to the store")
        done = (COMMITTING, COMMITTED) if wanted == COMMITTED else (wanted,)
        if record.state not in done:
            raise HalfMessageError(
                f"half message {id} is {record.state.replace('_', ' ')}"
                f"{f' ({record.reason})' if record.reason else ''}, cannot make it {wanted}"
            )
        return record.message

    @asynccontextmanager
    async def transaction(
        self, topic: str, payload: Any = b"", **options: Any
    ) -> AsyncIterator[HalfMessage]:
        """Prepare; run the block (the local transaction); commit if it returned, roll back
        if it raised. A crash in the block leaves the message to the checker."""
        half = await self.prepare(topic, payload, **options)
        try:
            yield half
        except BaseException:
            await half.rollback()
            raise
        await half.commit()
