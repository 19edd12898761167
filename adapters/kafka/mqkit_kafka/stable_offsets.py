"""A partition's committed offset once no transaction's commit of it is still pending
(KIP-447's `require_stable`), for exactly-once subscriptions.

A transaction commits its offsets when Kafka has written its markers, and a group
coordinator applies them a little after that: read at once, the offset can still be the
one before (84 of 200 reads right after commit_transaction() here). aiokafka (0.14) asks
with OffsetFetch v3, which answers with that stale offset; a new owner of the partition
starting there would copy that transaction's records a second time. OffsetFetch v7 can ask
for the stable offset instead, and is answered UNSTABLE_OFFSET_COMMIT until it is: asked
again until then. aiokafka has no v7, so it is declared here, as its own flexible-version
requests are.

An offset commit can also hang, left by a transaction whose marker Kafka skipped after a
restart (hanging.py): pending for good. Read once the partition's transactional id is
fenced, a pending offset can only be such a one, and past `HANGING_AFTER` the caller is
asked to end it (`on_hanging`). The read never falls back to the last stable offset: that
one is behind the transaction's output, which a takeover would then copy again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiokafka.errors as errors
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

from mqkit_kafka.committed import MOVED

UNSTABLE_OFFSET_COMMIT = 88  # aiokafka has no class for it
# How long an offset may stay unstable once its transactional id is fenced before it is
# taken for a hanging one: a commit's markers are applied in milliseconds once fenced.
HANGING_AFTER = 3.0
log = logging.getLogger("mqkit.kafka")


class OffsetFetchResponse_v7(Response):  # type: ignore[misc]
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("metadata", CompactString("utf-8")),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class OffsetFetchRequest_v7(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = OffsetFetchResponse_v7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("partition_indexes", CompactArray(Int32)),
                ("tags", TaggedFields),
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class StableOffsetFetch(Request[OffsetFetchRequest_v7]):  # type: ignore[misc]
    API_KEY = 9

    def __init__(self, group: str, tp: TopicPartition) -> None:
        self._group, self._tp = group, tp

    def build(self, request_struct_class: type[OffsetFetchRequest_v7]) -> OffsetFetchRequest_v7:
        topics: list[tuple[str, list[int], dict[int, bytes]]]
        topics = [(self._tp.topic, [self._tp.partition], {})]
        return request_struct_class(self._group, topics, True, {})


async def stable_committed(
    consumer: AIOKafkaConsumer,
    group: str,
    tp: TopicPartition,
    on_hanging: Callable[[], Awaitable[None]] | None = None,
) -> int | None:
    """The committed offset of `tp` in `group` (None: none), once it is stable; asked again
    while the coordinator is loading, moving, or applying a transaction's commit. Call it
    once the partition's transactional id is fenced (so no transaction of its is open): an
    offset unstable for `HANGING_AFTER` seconds is a hanging one, which `on_hanging` ends."""
    coordinator = consumer._coordinator
    unstable_since: float | None = None
    attempts = 0
    while True:
        await coordinator.ensure_coordinator_known()
        try:
            return _offset(await coordinator._send_req(StableOffsetFetch(group, tp)), tp)
        except (NotImplementedError, errors.IncompatibleBrokerVersion):
            # A broker before Kafka 2.5 has no stable read: the best it has.
            return await _last_stable(consumer, tp)
        except _Unstable:
            now = time.monotonic()
            unstable_since = now if unstable_since is None else unstable_since
            if now - unstable_since > HANGING_AFTER * 2 ** min(attempts, 4):
                unstable_since = None  # and again, less often, if ending it did not take
                attempts += 1
                await _end_hanging(tp, group, on_hanging)
        except errors.KafkaError as exc:
            if not exc.retriable:
                raise
            if isinstance(exc, MOVED):
                coordinator.coordinator_dead()
        await asyncio.sleep(0.05)


async def _end_hanging(
    tp: TopicPartition, group: str, on_hanging: Callable[[], Awaitable[None]] | None
) -> None:
    log.warning(
        "mqkit: %s of group %s: an offset commit still pending seconds after its "
        "transactional id was fenced: left hanging by Kafka; %s",
        tp,
        group,
        "ending it" if on_hanging else "waiting",
    )
    if on_hanging is None:
        return
    try:
        await on_hanging()
    except (errors.KafkaError, OSError, TimeoutError) as exc:
        log.warning("mqkit: ending the hanging offset commit of %s failed (%r)", tp, exc)


async def _last_stable(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    committed: int | None = await consumer.committed(tp)  # OffsetFetch v3: pending ignored
    return committed


class _Unstable(errors.KafkaError):  # type: ignore[misc]
    retriable = True


def _offset(response: Any, tp: TopicPartition) -> int | None:
    if response.error_code:
        raise errors.for_code(response.error_code)()
    for topic, partitions, _ in response.topics:
        for partition, offset, _, _, error_code, _ in partitions:
            if (topic, partition) != (tp.topic, tp.partition):
                continue
            if error_code == UNSTABLE_OFFSET_COMMIT:
                raise _Unstable(f"{tp}: a transaction's commit of its offset is pending")
            if error_code:
                raise errors.for_code(error_code)()
            return None if offset < 0 else int(offset)
    # Not answered for: asked again, never taken for "none committed" (a start over).
    raise _Unstable(f"{tp}: not in the answer to OffsetFetch")
