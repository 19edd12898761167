"""mqkit's metrics: the OpenTelemetry messaging conventions' instruments, and mqkit's own
(`mqkit.*`) for what the conventions do not name. Made once per MeterProvider (see
metering.py); the worker's metrics policy and Broker.send record into them.

In Prometheus (prometheus.py) the names become `messaging_client_sent_messages_total`,
`messaging_client_operation_duration_seconds`, `messaging_client_consumed_messages_total`,
`messaging_process_duration_seconds`, `mqkit_retries_total`, `mqkit_dead_letters_total`,
`mqkit_handlers_in_flight`, `mqkit_ratelimit_wait_seconds`, `mqkit_consumer_lag`,
`mqkit_consumer_lag_age_seconds`, `mqkit_outbox_backlog`, `mqkit_outbox_lag_seconds`,
`mqkit_outbox_relayed_total`, `mqkit_half_pending`, `mqkit_half_resolved_total`,
`mqkit_webhook_attempts_total`, `mqkit_webhook_endpoints`, `mqkit_webhook_received_total`.

Gauges of what is read now and then (lag, backlogs, endpoint states) are observable: the
reader (a poll in the worker, the relay, the checker, the dispatcher) `set`s the latest
value, and the SDK collects it when it is scraped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from mqkit._version import __version__
from mqkit.message import Message

# The conventions' advice for messaging durations, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

Attributes = dict[str, str | int]


# The observable gauges: name, unit, description.
_GAUGES = (
    ("mqkit.consumer.lag", "{message}", "Messages a group has not handled (broker.lag)."),
    ("mqkit.consumer.lag.age", "s", "Age of the oldest message a group has not handled."),
    ("mqkit.outbox.backlog", "{row}", "Outbox rows not yet sent."),
    ("mqkit.outbox.lag", "s", "Age of the oldest unsent outbox row."),
    ("mqkit.half.pending", "{message}", "Half messages of a group not yet resolved."),
    ("mqkit.webhook.endpoints", "{endpoint}", "Endpoints by mqkit.webhook.state."),
)


class Tally:
    """Sums per attribute set, kept in a dict and reported by an observable instrument when
    the metrics are collected: what changes on every message costs a dict update, where
    an SDK measurement (attributes cleaned and hashed each time) costs about 10 us."""

    def __init__(self) -> None:
        self._sums: dict[tuple[tuple[str, str | int], ...], list[Any]] = {}

    def add(self, value: float, attributes: Attributes) -> None:
        key = tuple(attributes.items())
        entry = self._sums.get(key)
        if entry is None:
            entry = self._sums[key] = [0, dict(attributes)]
        entry[0] += value

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for value, attributes in list(self._sums.values())]


class Instruments:
    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("mqkit", __version__)
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
        # Counted per message: tallied here and read at collection (Tally), not measured
        # through the SDK, which costs about 10 us a measurement on this machine.
        self.consumed = Tally()
        meter.create_observable_counter(
            "messaging.client.consumed.messages",
            callbacks=[self.consumed.observe],
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
        self.in_flight = Tally()
        meter.create_observable_up_down_counter(
            "mqkit.handlers.in_flight",
            callbacks=[self.in_flight.observe],
            unit="{message}",
            description="Deliveries a worker is handling now.",
        )
        self.limiter_wait = meter.create_histogram(
            "mqkit.ratelimit.wait",
            unit="s",
            description="How long a delivery waited for its rate limit's turn.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.outbox_relayed = meter.create_counter(
            "mqkit.outbox.relayed", unit="{row}", description="Outbox rows the broker confirmed."
        )
        self.half_resolved = meter.create_counter(
            "mqkit.half.resolved",
            unit="{message}",
            description="Half messages a checker resolved, by mqkit.half.outcome (committed, "
            "rolled_back, dead_lettered, finished).",
        )
        self.webhook_attempts = meter.create_counter(
            "mqkit.webhook.attempts",
            unit="{attempt}",
            description="Delivery attempts by mqkit.webhook.outcome (delivered, retrying, "
            "failed, refused, disabled) and mqkit.webhook.endpoint.",
        )
        self.webhook_received = meter.create_counter(
            "mqkit.webhook.received",
            unit="{request}",
            description="The receiver's answers by http.response.status_code and source.",
        )
        self._readings: dict[str, dict[tuple[tuple[str, str | int], ...], float]] = {}
        for name, unit, description in _GAUGES:
            self._readings[name] = {}
            meter.create_observable_gauge(
                name, callbacks=[self._observe(name)], unit=unit, description=description
            )

    def set(self, name: str, value: float, attributes: Attributes) -> None:
        """The latest value of the gauge `name` (one of _GAUGES) for `attributes`."""
        self._readings[name][tuple(sorted(attributes.items()))] = value

    def _observe(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        readings = self._readings[name]

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, dict(a)) for a, v in list(readings.items())]

        return observe

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
