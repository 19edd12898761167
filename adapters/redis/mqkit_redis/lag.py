"""A group's lag on Redis Streams: what it has not handled of the topic's stream and of its
retry stream (XINFO GROUPS: `lag`, entries not yet delivered, and `pending`, delivered and
not acked), plus the entries parked in the delay sets for it. The oldest age comes from the
entry ids, which are the Redis server's milliseconds at XADD (on the retry stream: when the
copy was made, not the first publish)."""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import ResponseError

from mqkit.lag import Lag
from mqkit_redis.client import Client
from mqkit_redis.keys import Keys

# Counting undelivered entries one by one (when Redis cannot tell a group's lag, after
# entries were deleted from the middle of the stream) stops here.
COUNT_AT_MOST = 100_000


async def stream_lag(client: Client, keys: Keys, topic: str, group: str) -> Lag:
    waiting = in_flight = 0
    oldest_ms: list[int] = []
    for stream in (topic, keys.retry(topic, group)):
        info = await _group(client, stream, group)
        if info is None:
            if stream == topic:  # a new group starts at the earliest entry retained
                waiting += await client.xlen(stream)
                oldest_ms += await _first_after(client, stream, "-")
            continue
        pending, last = int(info["pending"]), info["last-delivered-id"].decode()
        undelivered = info["lag"]
        if undelivered is None:
            undelivered = len(await _after(client, stream, last, COUNT_AT_MOST))
        waiting += int(undelivered)
        in_flight += pending
        summary = await client.xpending(stream, group) if pending else {"min": None}
        if summary["min"] is not None:  # None: acked since XINFO answered
            oldest_ms.append(_ms(summary["min"]))
        elif undelivered:
            oldest_ms += await _first_after(client, stream, f"({last}")
    for delayed in (keys.delay(topic), keys.delay(topic, group)):
        waiting += await client.zcard(delayed)
    oldest = min(oldest_ms, default=None)
    age = None if oldest is None else max(0.0, time.time() - oldest / 1000)
    return Lag(topic, group, waiting=waiting, in_flight=in_flight, oldest_age=age)


async def _group(client: Client, stream: str, group: str) -> dict[str, Any] | None:
    try:
        groups: list[dict[str, Any]] = await client.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc):
            return None
        raise
    return next((g for g in groups if g["name"] == group.encode()), None)


async def _after(client: Client, stream: str, last: str, count: int) -> list[Any]:
    return list(await client.xrange(stream, min=f"({last}", count=count) or [])


async def _first_after(client: Client, stream: str, start: str) -> list[int]:
    """The ms of the first entry from `start` on (none if there is none)."""
    entries = await client.xrange(stream, min=start, count=1) or []
    return [_ms(entries[0][0])] if entries and isinstance(entries[0][0], bytes) else []


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])
