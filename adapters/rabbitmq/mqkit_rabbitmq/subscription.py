"""A RabbitMQ subscription: a group's durable queue (or a private exclusive one) bound to the
topic's exchange, consumed with manual acks and prefetch; a nack puts a copy back (now, or
through a delay queue) and acks the original."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError

from mqkit.broker import Broker, Delivery, Start, Subscription
from mqkit.message import Message
from mqkit_rabbitmq.wire import from_amqp, group_queue

log = logging.getLogger("mqkit.rabbitmq")


class RabbitLink(Protocol):
    """What a subscription needs of the RabbitMQ broker beyond the Broker interface (which
    its deliveries dead-letter through): said here, so this module never imports the broker's."""

    queue_args: dict[str, Any]
    queue_locks: defaultdict[str, asyncio.Lock]
    subscriptions: set[RabbitSubscription]

    @property
    def connection(self) -> AbstractRobustConnection: ...

    async def exchange(
        self, topic: str, channel: AbstractChannel | None = None
    ) -> AbstractExchange: ...

    async def publish_copy(
        self, message: Message, queue: str, delay: float, *, attempt: int
    ) -> None: ...


class RabbitDelivery(Delivery):
    def __init__(
        self, message: Message, sub: RabbitSubscription, incoming: AbstractIncomingMessage
    ) -> None:
        super().__init__(message, sub.group, sub.broker)
        self._sub = sub
        self.incoming = incoming
        # The channel it came on, taken now: aio-pika's property raises once it is closed.
        self.channel: object = incoming.channel
        self.tag = _tag(incoming)

    async def _ack(self) -> None:
        try:
            await self.incoming.ack()
        except (AMQPError, ConnectionError, RuntimeError):
            # The channel died with the connection: the broker requeued the message already.
            log.info(
                "mqkit: ack of %s lost with its channel; it will be redelivered", self.message.id
            )
        finally:
            self._sub.settled(self)

    @classmethod
    async def _ack_many(cls, deliveries: Sequence[RabbitDelivery]) -> None:
        by_subscription: dict[RabbitSubscription, list[RabbitDelivery]] = {}
        for delivery in deliveries:
            by_subscription.setdefault(delivery._sub, []).append(delivery)
        for sub, settling in by_subscription.items():
            await sub.ack_many(settling)

    async def hand_back(self) -> None:
        """Requeue, unless settled already: for what a closing subscription fetched but no
        one finished."""
        if self._mark_settled():
            await self.incoming.nack(requeue=True)

    async def _nack(self, delay: float) -> None:
        try:
            target = self._sub.queue_name
            await self._sub.link.publish_copy(
                self.failed_copy(), target, delay, attempt=self.message.attempt
            )
            await self.incoming.ack()
        except (AMQPError, ConnectionError, RuntimeError):
            log.info("mqkit: nack of %s interrupted; the broker will redeliver it", self.message.id)
        finally:
            self._sub.settled(self)


class RabbitSubscription(Subscription):
    def __init__(
        self, broker: Broker, link: RabbitLink, topic: str, group: str | None, prefetch: int
    ) -> None:
        self.broker = broker
        self.link = link
        self.topic = topic
        self.group = group
        self.prefetch = prefetch
        self.queue_name = ""
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._buffer: asyncio.Queue[RabbitDelivery | None] = asyncio.Queue()
        self._unsettled: set[RabbitDelivery] = set()
        # Every delivery not yet settled, fetched or taken, by channel and delivery tag in the
        # order the broker sent them: what a multiple-ack may cover (see ack_many).
        self._held: dict[object, dict[int, RabbitDelivery]] = {}
        self._closing = False

    async def start(self, start: Start) -> RabbitSubscription:
        channel = await self.link.connection.channel()
        await channel.set_qos(prefetch_count=min(self.prefetch, 65_535))  # AMQP's limit
        exchange = await self.link.exchange(self.topic, channel)
        if self.group is None:
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await self._consume(channel, queue, exchange)
            return self
        name = group_queue(self.topic, self.group)
        async with self.link.queue_locks[name]:
            queue = await channel.declare_queue(name, durable=True, arguments=self.link.queue_args)
            await self._consume(channel, queue, exchange)
        return self

    async def _consume(
        self, channel: AbstractChannel, queue: AbstractQueue, exchange: AbstractExchange
    ) -> None:
        await queue.bind(exchange, "#")
        self._channel, self._queue, self.queue_name = channel, queue, queue.name
        self._tag = await queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._closing:
            with contextlib.suppress(AMQPError, ConnectionError, RuntimeError):
                await incoming.nack(requeue=True)
            return
        message = from_amqp(self.topic, incoming)
        delivery = RabbitDelivery(message, self, incoming)
        self._held.setdefault(delivery.channel, {})[delivery.tag] = delivery
        await self._buffer.put(delivery)

    def settled(self, delivery: RabbitDelivery) -> None:
        self._unsettled.discard(delivery)
        held = self._held.get(delivery.channel)
        if held is not None:
            held.pop(delivery.tag, None)
            if not held:
                del self._held[delivery.channel]

    async def ack_many(self, deliveries: Sequence[RabbitDelivery]) -> None:
        """One multiple-ack for the run of lowest delivery tags on a channel that are all in
        `deliveries`; one ack each for the rest. A multiple-ack settles every tag up to its
        own on the channel, so it may only cover tags nothing else still holds: a delivery
        handled elsewhere, or one fetched and not yet taken, must stay unacked."""
        by_channel: dict[object, set[int]] = {}
        for delivery in deliveries:
            by_channel.setdefault(delivery.channel, set()).add(delivery.tag)
        singles = list(deliveries)
        for channel, tags in by_channel.items():
            run: list[RabbitDelivery] = []
            for tag, held in self._held.get(channel, {}).items():  # in tag order
                if tag not in tags:
                    break
                run.append(held)
            if len(run) < 2:
                continue
            covered = set(run)
            singles = [d for d in singles if d not in covered]
            try:
                await run[-1].incoming.ack(multiple=True)
            except (AMQPError, ConnectionError, RuntimeError):
                log.info("mqkit: acks of %d messages lost with their channel", len(run))
            finally:
                for delivery in run:
                    self.settled(delivery)
        for delivery in singles:
            await delivery._ack()

    async def __anext__(self) -> Delivery:
        if self._closing and self._buffer.empty():
            raise StopAsyncIteration
        delivery = await self._buffer.get()
        if delivery is None:
            raise StopAsyncIteration
        self._unsettled.add(delivery)
        return delivery

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        pending: list[RabbitDelivery] = []
        while not self._buffer.empty():
            item = self._buffer.get_nowait()
            if item is not None:
                pending.append(item)
        pending += list(self._unsettled)
        with contextlib.suppress(AMQPError, ConnectionError, RuntimeError, TimeoutError):
            if self._queue is not None and self._tag is not None:
                await asyncio.wait_for(self._queue.cancel(self._tag), 3)
            for delivery in pending:  # hand back what was fetched but not finished
                await delivery.hand_back()
            if self._channel is not None:
                await asyncio.wait_for(self._channel.close(), 3)
        self._buffer.put_nowait(None)
        self.link.subscriptions.discard(self)


def _tag(incoming: AbstractIncomingMessage) -> int:
    tag = incoming.delivery_tag
    assert tag is not None, "a message consumed with manual acks has a delivery tag"
    return tag
