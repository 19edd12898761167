"""One delivered message, settled exactly once: `ack`, `nack` (again, optionally later) or
`reject` (to the dead-letter queue with its reason); `ack_all` settles many in as few
requests as the backend allows. Backends subclass Delivery and implement the underscored
methods (see mqkit.broker for the interface as a whole).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from mqkit import transactions
from mqkit.message import Message
from mqkit.transactions import Transaction
from mqkit.wire import FIRST_FAILED_AT, dead_letter_copy

if TYPE_CHECKING:
    from mqkit.broker import Broker


class Delivery(ABC):
    """One delivered message, to be settled exactly once. Settling twice is a no-op."""

    def __init__(self, message: Message, group: str | None, broker: Broker) -> None:
        self.message = message
        self.group = group
        self._broker = broker
        self._settled = False

    @property
    def settled(self) -> bool:
        return self._settled

    async def ack(self) -> None:
        """Done with the message: it will not be delivered to this group again."""
        if self._mark_settled():
            await self._ack()

    async def nack(self, delay: float | None = None) -> None:
        """Deliver the message again, after `delay` seconds, without blocking other messages."""
        if self._mark_settled():
            await self._nack(max(0.0, delay or 0.0))

    async def reject(self, reason: str | BaseException) -> None:
        """Give up on the message: publish it to `<topic>.dlq` with the reason (see
        dead_letter_copy), then ack it."""
        if not self._mark_settled():
            return
        copy = dead_letter_copy(
            self.message, reason, group=self.group, first_failed_at=self.first_failed_at()
        )
        await self._broker.dead_letter([copy])
        await self._ack()

    async def publish(
        self,
        topic: str,
        payload: Any = b"",
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
        content_type: str | None = None,
        delay: float | None = None,
    ) -> Message:
        """Publish as part of handling this delivery (`ctx.publish` in a handler). From an
        exactly-once subscription the message joins the delivery's output: it becomes
        visible with the ack, in one transaction, and is dropped if the delivery is nacked
        or rejected instead. Elsewhere it is published at once (Broker.publish)."""
        output = self._output()
        send = self._broker.publish(
            topic,
            payload,
            key=key,
            headers=headers,
            id=id,
            content_type=content_type,
            delay=delay,
        )
        if output is None:
            return await send
        with transactions.joined(self._broker, output):
            return await send

    def _output(self) -> Transaction | None:
        """Where `publish` sends on an exactly-once subscription; None: out at once."""
        return None

    def first_failed_at(self) -> str:
        """When this message first failed (epoch seconds, as text): carried through nacks in
        the header `mqkit-first-failed-at`, so the DLQ can tell how long it kept failing."""
        return self.message.headers.get(FIRST_FAILED_AT) or f"{time.time():.3f}"

    def failed_copy(self) -> Message:
        """The message as a nack re-publishes it (backends that redeliver a copy)."""
        if FIRST_FAILED_AT in self.message.headers:
            return self.message
        headers = {**self.message.headers, FIRST_FAILED_AT: self.first_failed_at()}
        return self.message.with_changes(headers=headers)

    def _mark_settled(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        return True

    @abstractmethod
    async def _ack(self) -> None: ...

    @classmethod
    async def _ack_many(cls, deliveries: Sequence[Self]) -> None:
        """Ack unsettled deliveries of this kind together (see ack_all). Backends whose broker
        takes many acks in one request override this; the default acks them one by one."""
        for delivery in deliveries:
            await delivery._ack()

    @abstractmethod
    async def _nack(self, delay: float) -> None: ...

    def __repr__(self) -> str:
        m = self.message
        return f"<Delivery {m.topic} id={m.id} attempt={m.attempt} group={self.group}>"


async def ack_all(deliveries: Sequence[Delivery]) -> None:
    """Ack many deliveries at once, in as few requests as their backend allows: one XACK on
    Redis, one transaction on SQLite, one multiple-ack on RabbitMQ for the run of delivery
    tags nothing else holds (see each adapter), and on Kafka one offset commit as always.
    Settled deliveries are skipped, as `ack` skips them."""
    by_kind: dict[type[Delivery], list[Delivery]] = {}
    for delivery in deliveries:
        if delivery._mark_settled():
            by_kind.setdefault(type(delivery), []).append(delivery)
    for kind, unsettled in by_kind.items():
        await kind._ack_many(unsettled)
