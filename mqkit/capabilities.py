"""What a backend promises. The conformance suite tests exactly what is claimed."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Capabilities:
    durable: bool = False
    consumer_groups: bool = False
    redelivery: bool = False
    ordered_by_key: bool = False
    delayed_delivery: bool = False
    replay: bool = False
    native_transactions: bool = False
    # Acking one message leaves earlier unacked ones pending (false on a log with a single
    # committed offset, like Kafka, where an ack only counts once everything before it is).
    selective_ack: bool = False
    # What broker.lag() can tell (mqkit/lag.py): the unhandled count; in flight apart from
    # waiting; the age of the oldest.
    lag: bool = False
    lag_in_flight: bool = False
    lag_age: bool = False

    def claimed(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]
