"""The worker's own policies, one per module, as middlewares in one chain around the user's.
Outermost first, as every subscriber runs them:

0. `tracing`: with a TracerProvider installed, a `process` span around the rest.
   `metrics`: with a MeterProvider installed, the delivery counted and timed.
1. `stats`: counts the outcome and the messages in flight.
2. `retry`: settles the delivery. Returning acks it; Retry or a failure nacks it with the
   policy's delay, or dead-letters it once attempts run out; a poison message (DecodeError,
   Reject) is dead-lettered at once.
3. `replay`: acks, without the handler, a DLQ replay addressed to another group.
4. `keyed_limit`: with `rate_by=`, waits for the message's key's turn, in its handler slot.
5. the App's middlewares, then the subscriber's, in the order given; then the handler.

Before all of them, the consumer takes a handler slot and passes the fetch gate (an un-keyed
rate limit), which is what holds back the fetch: see mqkit.worker.consumer.
"""

from mqkit.worker.middleware.keyed_limit import keyed_limit
from mqkit.worker.middleware.replay import replay_filter
from mqkit.worker.middleware.retry import retry_and_dead_letter
from mqkit.worker.middleware.stats import Stats, counting

__all__ = ["Stats", "counting", "keyed_limit", "replay_filter", "retry_and_dead_letter"]
