"""A Kafka record handed out by a subscription (subscription.py), settled through it.

On an exactly-once subscription a delivery also carries its output: what handling it
published (`delivery.publish`, `ctx.publish`), its dead-letter copy when rejected, or its
retry-topic copy when nacked for long. That output is committed with the offset past it, in
the partition's transaction (exactly_once.py); a delivery nacked to be redelivered from
memory is a new delivery, with an output of its own, and what the old one published is
dropped with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from mqkit import transactions
from mqkit.broker import Delivery
from mqkit.message import Message
from mqkit.transactions import Transaction
from mqkit_kafka.batches import Record
from mqkit_kafka.transactions import Staged

if TYPE_CHECKING:
    from mqkit_kafka.subscription import KafkaSubscription


class KafkaDelivery(Delivery):
    def __init__(
        self,
        message: Message,
        sub: KafkaSubscription,
        tp: TopicPartition,
        offset: int,
        generation: int,
    ) -> None:
        super().__init__(message, sub.group, sub.broker)
        self.sub = sub
        self.tp = tp
        self.offset = offset
        self.generation = generation
        self.due = 0.0  # Unix seconds before which it is not handed out
        self._staged: Staged | None = None

    @property
    def output(self) -> list[Record]:
        """What an exactly-once subscription commits with this delivery's offset."""
        return self._staged.records if self._staged is not None else []

    def replace_output(self, records: list[Record]) -> Staged:
        """Drop what handling published, for `records` (a dead-letter or retry copy)."""
        self._staged = Staged()
        self._staged.records = records
        return self._staged

    def _output(self) -> Transaction | None:
        if self.sub.transactions is None:
            return None
        if self._staged is None:
            self._staged = Staged()
        return self._staged

    async def reject(self, reason: str | BaseException) -> None:
        if self.sub.transactions is None or self.settled:
            await super().reject(reason)
            return
        # The dead letter instead of the output, through the broker's own dead-lettering
        # (its checks and spans), into this delivery's transaction rather than out.
        with transactions.joined(self._broker, self.replace_output([])):
            await super().reject(reason)

    async def _ack(self) -> None:
        self.sub.finished(self)

    async def _nack(self, delay: float) -> None:
        await self.sub.retry(self, delay)
