"""A blocking facade for code that is not async: a Django or Flask view, a script.

    with mqkit.sync.connect() as broker:
        broker.publish("orders", {"id": 1})
        for delivery in broker.consume("orders", group="billing", timeout=5):
            handle(delivery.message.decode(dict))
            # acked when the loop asks for the next message; an exception in the loop body
            # leaves it unacked, so it is delivered again

The async broker runs on an event loop in a background thread owned by the facade, so it
can be called from any thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar

from mqkit.broker import Broker, Delivery, Start, Subscription
from mqkit.message import Message
from mqkit.registry import connect as async_connect

T = TypeVar("T")


class SyncDelivery:
    def __init__(self, delivery: Delivery, broker: SyncBroker) -> None:
        self._delivery = delivery
        self._broker = broker
        self.message = delivery.message

    @property
    def settled(self) -> bool:
        return self._delivery.settled

    def ack(self) -> None:
        self._broker._run(self._delivery.ack())

    def nack(self, delay: float | None = None) -> None:
        self._broker._run(self._delivery.nack(delay))

    def reject(self, reason: str) -> None:
        self._broker._run(self._delivery.reject(reason))


class SyncBroker:
    def __init__(self, url: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mqkit-sync", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self.broker: Broker = self._run(_started(url))
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def publish(
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
        return self._run(
            self.broker.publish(
                topic,
                payload,
                key=key,
                headers=headers,
                id=id,
                content_type=content_type,
                delay=delay,
            )
        )

    def publish_batch(self, messages: Sequence[Message], *, delay: float | None = None) -> None:
        self._run(self.broker.publish_batch(messages, delay=delay))

    def consume(
        self,
        topic: str,
        *,
        group: str | None = None,
        start: Start | None = None,
        timeout: float | None = None,
        count: int | None = None,
        auto_ack: bool = True,
    ) -> Iterator[SyncDelivery]:
        """Yield deliveries until `count` were yielded or none came for `timeout` seconds.

        With `auto_ack` a delivery the loop body did not settle is acked when the next one
        is asked for (or the loop ends normally).
        """
        subscription: Subscription = self._run(
            self.broker.subscribe(topic, group=group, start=start)
        )
        yielded = 0
        try:
            while count is None or yielded < count:
                try:
                    delivery = self._run(_next(subscription, timeout))
                except (TimeoutError, StopAsyncIteration):
                    return
                item = SyncDelivery(delivery, self)
                yield item
                yielded += 1
                if auto_ack and not item.settled:
                    item.ack()
        finally:
            if not self._closed:
                self._run(subscription.close())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.broker.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _started(url: str | None) -> Broker:
    return await async_connect(url).start()


async def _next(subscription: Subscription, timeout: float | None) -> Delivery:
    return await asyncio.wait_for(anext(subscription), timeout)


def connect(url: str | None = None) -> SyncBroker:
    """A started, blocking broker for `url` (default: MQKIT_URL or the embedded default)."""
    return SyncBroker(url)
