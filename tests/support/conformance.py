"""The backends the conformance suite runs against, and skipping what a backend does not claim.

The shipped suite's cases (mqkit.testing.conformance) run here on the core backends and in
each adapter's own tests on its server; the cases only this repository has (webhooks) run
on all of these. `MQKIT_TEST_BACKENDS` (comma-separated names) picks them; by default all, with the
servers that `scripts/services up` starts (MQKIT_TEST_*_URL override where they are). A named
backend that cannot be reached fails the run rather than being skipped, so a green run means
every listed backend was tested.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mqkit.testing.conformance.fixtures import require, with_options


@dataclass(frozen=True)
class Target:
    name: str
    # Builds a URL for one test; extra query options (e.g. lease=1s) are appended.
    make_url: Callable[[Path, str], str]


def redis_url() -> str:
    return os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


TARGETS: dict[str, Target] = {
    "memory": Target(
        "memory", lambda tmp, opts: with_options(f"memory://{uuid.uuid4().hex}", opts)
    ),
    "sqlite": Target(
        "sqlite", lambda tmp, opts: with_options(f"sqlite:///{tmp / 'queue.db'}", opts)
    ),
    "redis": Target("redis", lambda tmp, opts: with_options(redis_url(), opts)),
    "redis+pubsub": Target(
        "redis+pubsub",
        lambda tmp, opts: with_options(redis_url().replace("redis://", "redis+pubsub://"), opts),
    ),
    "amqp": Target(
        "amqp",
        lambda tmp, opts: with_options(
            os.environ.get("MQKIT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/mqkit-test"),
            opts,
        ),
    ),
    # Quorum queues (Raft-replicated) behave differently from classic ones in places that
    # matter here: delivery counts, redelivery order, TTL dead-lettering for delays.
    "amqp-quorum": Target(
        "amqp-quorum",
        lambda tmp, opts: with_options(
            os.environ.get("MQKIT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/mqkit-test"),
            "queue_type=quorum" + (f"&{opts}" if opts else ""),
        ),
    ),
    "kafka": Target(
        "kafka",
        lambda tmp, opts: with_options(
            os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092"), opts
        ),
    ),
}

DEFAULT = ",".join(TARGETS)


def selected() -> list[Target]:
    names = [n.strip() for n in os.environ.get("MQKIT_TEST_BACKENDS", DEFAULT).split(",")]
    unknown = [n for n in names if n and n not in TARGETS]
    if unknown:
        raise RuntimeError(f"unknown MQKIT_TEST_BACKENDS {unknown}; known: {sorted(TARGETS)}")
    return [TARGETS[n] for n in names if n]


__all__ = ["TARGETS", "Target", "redis_url", "require", "selected"]
