"""`webhook replay`: send an endpoint again what it did not get (or everything) since a time.

The messages come from the attempt log, as first published (same id, so receivers that
already have one deduplicate it), and go to the dispatchers' retry topic as first attempts;
a running dispatcher delivers them under the endpoint's usual limits and schedule.
"""

from __future__ import annotations

from mqkit.broker import Broker
from mqkit.webhooks.attempts import AttemptLog
from mqkit.webhooks.dispatcher import RETRY_TOPIC, retry_job


async def replay(
    broker: Broker,
    attempt_log: AttemptLog,
    endpoint_id: str,
    *,
    since: float,
    include_delivered: bool = False,
    retry_topic: str = RETRY_TOPIC,
) -> int:
    """Queue the replays; how many messages."""
    messages = await attempt_log.to_replay(
        endpoint_id, since=since, include_delivered=include_delivered
    )
    for start in range(0, len(messages), 500):
        await broker.publish_batch(
            [
                retry_job(m, endpoint_id, m.topic, 1, retry_topic)
                for m in messages[start : start + 500]
            ]
        )
    return len(messages)
