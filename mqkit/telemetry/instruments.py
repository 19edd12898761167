"""mqkit's metrics: the OpenTelemetry messaging conventions' instruments, and mqkit's own
(`mqkit.*`) for what the conventions do not name. Made once per MeterProvider (see
metering.py); the worker's metrics policy and Broker.send record into them.

In Prometheus (prometheus.py) the names become `messaging_client_sent_messages_total`,
`messaging_client_operation_duration_seconds`, `messaging_client_consumed_messages_total`,
`messaging_process_duration_seconds`, `mqkit_retries_total`, `mqkit_dead_letters_total`,
`mqkit_handlers_in_flight`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version

from opentelemetry.metrics import MeterProvider

from mqkit.message import Message

# The conventions' advice for messaging durations, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

Attributes = dict[str, str | int]


class Instruments:
    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("mqkit", version("mqkit"))
        self.sent = meter.create_counter(
            "messaging.client.sent.messages",
            unit="{message}",
            description="Messages a producer attempted to send (error.type when it failed).",
        )
        self.operation_duration = meter.create_histogram(
            "messaging.client.operation.duration",
            unit="s",
            description="How long a publish (one message or a batch) took.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Deliveries handed to a handler, every attempt counted.",
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="How long the worker took with a delivery, its settling included.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.retries = meter.create_counter(
            "mqkit.retries", unit="{message}", description="Deliveries nacked to be retried."
        )
        self.dead_letters = meter.create_counter(
            "mqkit.dead_letters",
            unit="{message}",
            description="Messages dead-lettered: mqkit.reason rejected (poison) or attempts "
            "(out of attempts).",
        )
        self.in_flight = meter.create_up_down_counter(
            "mqkit.handlers.in_flight",
            unit="{message}",
            description="Deliveries a worker is handling now.",
        )

    @contextmanager
    def sending(self, system: str, messages: Sequence[Message]) -> Iterator[None]:
        """Count and time one publish of `messages`; a failed one with its error.type."""
        topics = {m.topic for m in messages}
        attributes: Attributes = {
            "messaging.system": system,
            "messaging.operation.name": "send",
            "messaging.destination.name": next(iter(topics)) if len(topics) == 1 else "(several)",
        }
        started = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            attributes = {**attributes, "error.type": type(exc).__qualname__}
            raise
        finally:
            self.operation_duration.record(time.perf_counter() - started, attributes)
            self.sent.add(len(messages), attributes)
