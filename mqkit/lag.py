"""How far a consumer group is behind on a topic: `await broker.lag(topic, group)`.

What a backend can tell differs, and its capabilities say which (the conformance suite holds
each to them): `lag` (the count of messages the group has not handled), `lag_in_flight`
(those delivered and not yet settled, told apart from those waiting), `lag_age` (how old
the oldest of them is).

- sqlite, memory: from their tables: entries after the group's cursor and those pending,
  leased or not.
- Redis Streams: XINFO GROUPS' lag and pending, on the topic's stream and the group's retry
  stream, plus the delayed entries parked for them; ages from the entry ids (milliseconds).
- Kafka: the end offsets minus the group's committed offsets, on the topic and the group's
  retry topic. A record counts until its offset is committed, handled or not, so in flight
  is not told apart.
- RabbitMQ: the group's queue's ready messages (AMQP reports no more: unacked ones and those
  in delay queues need the management API).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lag:
    topic: str
    group: str
    waiting: int  # not yet delivered to the group (due, or delayed for a retry)
    in_flight: int | None = None  # delivered, not settled; None: not told apart from waiting
    oldest_age: float | None = None  # seconds; None: nothing unhandled, or cannot tell

    @property
    def unhandled(self) -> int:
        return self.waiting + (self.in_flight or 0)
