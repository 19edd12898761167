"""The broker interface every backend implements.

A `Broker` publishes and subscribes. A `Subscription` is an async iterator of `Delivery`
objects (mqkit.delivery); each delivery is settled exactly once by `ack`, `nack` (redeliver,
optionally later) or `reject` (to the dead-letter queue with a reason). Backends subclass
these three and implement the underscored methods; the public methods add the checks every
backend shares. Transactions (mqkit.transactions) are for backends that claim
`native_transactions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, TypeVar, cast

from mqkit import transactions
from mqkit.capabilities import Capabilities
from mqkit.delivery import Delivery as Delivery
from mqkit.delivery import ack_all as ack_all
from mqkit.errors import (
    BrokerUnavailableError,
    CapabilityError,
    ClosedError,
    ConfigurationError,
    InvalidTopicError,
    MessageTooLargeError,
)
from mqkit.lag import Lag
from mqkit.message import Message
from mqkit.options import COMMON, MAX_MESSAGE_BYTES, PUBLISH_TIMEOUT, Option, read_options
from mqkit.telemetry import metering, tracing
from mqkit.transactions import Transaction
from mqkit.urls import mask, query_options

# Their home is mqkit.wire; kept importable from here, where they were first.
from mqkit.wire import DLQ_GROUP as DLQ_GROUP
from mqkit.wire import DLQ_SUFFIX as DLQ_SUFFIX
from mqkit.wire import FIRST_FAILED_AT as FIRST_FAILED_AT
from mqkit.wire import dead_letter_copy as dead_letter_copy
from mqkit.wire import dlq_topic as dlq_topic

Start = Literal["earliest", "latest"]
T = TypeVar("T")


# Kafka's rules are the strictest of the brokers, so a topic valid here is valid everywhere.
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def validate_topic(topic: str) -> str:
    if not _TOPIC.match(topic):
        raise InvalidTopicError(
            f"invalid topic {topic!r}: use 1-249 characters from A-Z a-z 0-9 . _ -"
        )
    return topic


class Broker(ABC):
    """A connection to one message broker. Use as `async with mqkit.connect(url) as broker:`."""

    capabilities: ClassVar[Capabilities]
    # The URL options this backend reads (see mqkit.options), and those its client library
    # takes from the URL; anything else in the query string is a ConfigurationError.
    OPTIONS: ClassVar[tuple[Option[Any], ...]] = COMMON
    CLIENT_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    # `messaging.system` in traces and metrics: the conventions' name where there is one.
    SYSTEM: ClassVar[str] = "mqkit"

    def __init__(self, url: str) -> None:
        self.url = url
        self.options = query_options(url)
        self._settings = read_options(
            self.options, self.OPTIONS, client=self.CLIENT_OPTIONS, where=mask(url)
        )
        self.max_message_bytes = self.option(MAX_MESSAGE_BYTES)
        # How long a publish may wait for an unreachable broker before PublishTimeoutError.
        self.publish_timeout = self.option(PUBLISH_TIMEOUT)
        self._closed = False
        self._started = False

    def option(self, option: Option[T]) -> T:
        """The value of a declared URL option (given, else its default)."""
        return cast(T, self._settings[option.name])

    @property
    def safe_url(self) -> str:
        """The URL with the password masked, for logs and errors."""
        return mask(self.url)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Self:
        """Connect. Raises BrokerUnavailableError naming the URL when that fails. Idempotent."""
        if self._closed:
            raise ClosedError(f"broker {self.safe_url} is closed")
        if not self._started:
            await self._start()
            self._started = True
        return self

    async def close(self) -> None:
        """Close subscriptions and connections, draining what is in flight. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    async def check(self, timeout: float = 5.0) -> None:
        """Raise BrokerUnavailableError, naming the URL, unless the broker answers now
        (within `timeout` seconds): what a readiness probe asks."""
        if self._closed or not self._started:
            state = "closed" if self._closed else "not started"
            raise BrokerUnavailableError(f"broker {self.safe_url} is {state}")
        try:
            async with asyncio.timeout(timeout):
                await self._check()
        except TimeoutError:
            raise BrokerUnavailableError(
                f"broker {self.safe_url} did not answer within {timeout:g}s"
            ) from None
        except BrokerUnavailableError:
            raise
        except Exception as exc:
            raise BrokerUnavailableError(
                f"broker {self.safe_url} does not answer: {exc!r}"
            ) from exc

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- publishing --------------------------------------------------------------------------

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
        """Publish one message and wait until the broker has it. Returns the message sent."""
        message = Message.create(
            topic, payload, key=key, headers=headers, id=id, content_type=content_type
        )
        [sent] = await self.send([message], delay=delay)
        return sent

    async def publish_batch(
        self, messages: Sequence[Message], *, delay: float | None = None
    ) -> None:
        """Publish prepared messages (see Message.create) and wait until the broker has all."""
        await self.send(messages, delay=delay)

    async def send(
        self, messages: Sequence[Message], *, delay: float | None = None, created: bool = False
    ) -> Sequence[Message]:
        """Check and hand messages to the backend; shared by publish and publish_batch.
        Returns what was sent: `messages`, or with tracing on, copies carrying the trace.
        `created`: the messages were stored to be sent later (the outbox, half messages, the
        DLQ) and carry the trace context of their creation, which they keep (see
        telemetry/spans.py)."""
        if self._closed:
            raise ClosedError(f"cannot publish: broker {self.safe_url} is closed")
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0 seconds")
        for topic in {m.topic for m in messages}:
            validate_topic(topic)
        for message in messages:
            if message.size > self.max_message_bytes:
                raise MessageTooLargeError(message.size, self.max_message_bytes)
        if not messages:
            return messages
        tracer = tracing.tracer()
        meters = metering.instruments()
        if tracer is None and meters is None:
            await self._out(messages, delay or None)
            return messages
        with contextlib.ExitStack() as observing:
            if meters is not None:
                observing.enter_context(meters.sending(self.SYSTEM, messages))
            if tracer is not None:
                from mqkit.telemetry import spans  # imports OpenTelemetry's trace API

                messages = observing.enter_context(
                    spans.sending(tracer, self.SYSTEM, messages, created=created)
                )
            await self._out(messages, delay or None)
        return messages

    def _out(self, messages: Sequence[Message], delay: float | None) -> Awaitable[None]:
        """Out to the broker, or into the transaction open here (mqkit.transactions)."""
        transaction = transactions.open_for(self)
        if transaction is None:
            return self._send(messages, delay)
        return transaction.send(messages, delay)

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """`async with broker.transaction():` everything published through this broker in
        the block is visible together when it ends, or never if it raises. A publish in the
        block returns once the transaction holds the message. Backends without
        `native_transactions` raise CapabilityError."""
        if not self.capabilities.native_transactions:
            raise CapabilityError(self.SYSTEM, "native_transactions", "broker.transaction()")
        if self._closed:
            raise ClosedError(f"cannot begin a transaction: broker {self.safe_url} is closed")
        return transactions.running(self, self._begin_transaction)

    async def dead_letter(self, messages: Sequence[Message]) -> None:
        """Publish to dead-letter topics. Backends that keep only what a group's queue holds
        (RabbitMQ) override this to make sure the DLQ group exists first."""
        await self.send(messages)

    # -- subscribing -------------------------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        *,
        group: str | None = None,
        start: Start | None = None,
        prefetch: int = 100,
        exactly_once: bool = False,
    ) -> Subscription:
        """Start receiving `topic`.

        Subscriptions in one `group` compete for its messages; every group gets every message.
        Without a group the subscription is private and ends with it. `start` decides where a
        new group begins: "earliest" (what is retained) or "latest" (only what comes next);
        named groups default to "earliest", private ones to "latest".

        `exactly_once` (backends with `native_transactions`, named groups): what is
        published through a delivery (`delivery.publish`, `ctx.publish` in a handler) and
        the commit of its ack are one transaction, so `read_committed` readers see each
        input's output once (see mqkit.transactions).
        """
        if self._closed:
            raise ClosedError(f"cannot subscribe: broker {self.safe_url} is closed")
        self.validate_subscription_topic(topic)
        if prefetch < 1:
            raise ValueError("prefetch must be >= 1")
        if start is None:
            start = "earliest" if group is not None else "latest"
        if exactly_once:
            if not self.capabilities.native_transactions:
                raise CapabilityError(self.SYSTEM, "native_transactions", "exactly_once=True")
            if group is None:
                raise ConfigurationError("exactly_once=True needs a named group")
            return await self._subscribe_exactly_once(topic, group, start, prefetch)
        return await self._subscribe(topic, group, start, prefetch)

    def validate_subscription_topic(self, topic: str) -> None:
        """Refuse a topic this backend cannot subscribe to; backends with patterns widen it."""
        validate_topic(topic)

    async def lag(self, topic: str, group: str) -> Lag:
        """What `group` has not handled of `topic` (see mqkit/lag.py for what each backend
        can tell). A group that does not exist yet counts what it would get if it started
        now, from the earliest retained message where the backend keeps them."""
        if self._closed or not self._started:
            raise ClosedError(f"cannot read lag: broker {self.safe_url} is not running")
        validate_topic(topic)
        if not self.capabilities.lag:
            raise ConfigurationError(f"{self.SYSTEM} keeps no consumer groups: no lag to read")
        return await self._lag(topic, group)

    # -- for backends ------------------------------------------------------------------------

    async def _lag(self, topic: str, group: str) -> Lag:
        raise NotImplementedError  # backends that claim the capability implement it

    @abstractmethod
    async def _start(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    async def _check(self) -> None:  # noqa: B027 (a hook with a default: nothing to ask)
        """Ask the broker something cheap; raise if it cannot answer. Embedded backends,
        which have no server to lose, answer as long as they are open."""

    @abstractmethod
    async def _send(self, messages: Sequence[Message], delay: float | None) -> None: ...

    @abstractmethod
    async def _subscribe(
        self, topic: str, group: str | None, start: Start, prefetch: int
    ) -> Subscription: ...

    async def _begin_transaction(self) -> Transaction:
        raise NotImplementedError  # backends that claim native_transactions implement it

    async def _subscribe_exactly_once(
        self, topic: str, group: str, start: Start, prefetch: int
    ) -> Subscription:
        raise NotImplementedError  # backends that claim native_transactions implement it

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.safe_url}>"


class Subscription(ABC):
    """An async iterator of deliveries. Close it (or use `async with`) when done.

    Closing stops fetching and hands every unsettled delivery back for redelivery.
    """

    topic: str
    group: str | None

    def __aiter__(self) -> Self:
        return self

    @abstractmethod
    async def __anext__(self) -> Delivery: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
