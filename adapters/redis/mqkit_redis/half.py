"""Half messages in Redis: one hash per message, a sorted set of due checks per group.

Keys (under `prefix`, default `mqkit:half:`): `h:<id>` the message and its state,
`due:<group>` active ids scored by their next check time, `all` every id by creation time
(for listing and purging). Each state change is one Lua script, so it is atomic; the claim
returns the records it changed, so a checker acts on what it claimed and nothing else.
Scripts build key names from the prefix; on Redis Cluster the prefix is made a hash tag
(`{mqkit:half:}`), so that every key of the store is in one slot (one primary holds it all).
Redis must persist (AOF) for prepared messages to survive its restart.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio.cluster import RedisCluster

from mqkit.half.store import ACTIVE, PREPARED, HalfRecord
from mqkit.message import Message
from mqkit_redis import client as redis_client

# KEYS[1] = the message's hash. ARGV: prefix, id, holder, until, held_by ('' for anyone).
_BEGIN_COMMIT = """
local h = KEYS[1]
if redis.call('HGET', h, 'state') ~= 'prepared' then return nil end
if ARGV[5] ~= '' and redis.call('HGET', h, 'holder') ~= ARGV[5] then return nil end
redis.call('HSET', h, 'state', 'committing', 'holder', ARGV[3], 'check_at', ARGV[4])
redis.call('ZADD', ARGV[1] .. 'due:' .. redis.call('HGET', h, 'group'), ARGV[4], ARGV[2])
return redis.call('HGETALL', h)
"""

# ARGV: prefix, id, holder, now
_FINISH_COMMIT = """
local h = KEYS[1]
if redis.call('HGET', h, 'state') ~= 'committing' or redis.call('HGET', h, 'holder') ~= ARGV[3]
then return 0 end
redis.call('HSET', h, 'state', 'committed', 'holder', '', 'resolved_at', ARGV[4])
redis.call('ZREM', ARGV[1] .. 'due:' .. redis.call('HGET', h, 'group'), ARGV[2])
return 1
"""

# ARGV: prefix, id, new state, held_by ('' for anyone), reason, now
_RESOLVE = """
local h = KEYS[1]
if redis.call('HGET', h, 'state') ~= 'prepared' then return 0 end
if ARGV[4] ~= '' and redis.call('HGET', h, 'holder') ~= ARGV[4] then return 0 end
redis.call('HSET', h, 'state', ARGV[3], 'holder', '', 'resolved_at', ARGV[6], 'reason', ARGV[5])
redis.call('ZREM', ARGV[1] .. 'due:' .. redis.call('HGET', h, 'group'), ARGV[2])
return 1
"""

# KEYS[1] = due:<group>. ARGV: prefix, now, until, holder, limit
_CLAIM = """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[5])) do
  local h = ARGV[1] .. 'h:' .. id
  if redis.call('HGET', h, 'state') == 'prepared' then redis.call('HINCRBY', h, 'checks', 1) end
  redis.call('HSET', h, 'holder', ARGV[4], 'check_at', ARGV[3])
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  table.insert(out, redis.call('HGETALL', h))
end
return out
"""


class RedisHalfStore:
    """`RedisHalfStore("redis://host:6379/0")` or `RedisHalfStore(client=existing)`."""

    def __init__(
        self, url: str | None = None, *, client: Any = None, prefix: str = "mqkit:half:"
    ) -> None:
        self.client, self._owns = redis_client.store_client(url, client)
        clustered = isinstance(self.client, RedisCluster)
        self.prefix = f"{{{prefix}}}" if clustered and "{" not in prefix else prefix
        self._begin_commit = self.client.register_script(_BEGIN_COMMIT)
        self._finish_commit = self.client.register_script(_FINISH_COMMIT)
        self._resolve = self.client.register_script(_RESOLVE)
        self._claim = self.client.register_script(_CLAIM)

    def _h(self, id: str) -> str:
        return f"{self.prefix}h:{id}"

    async def prepare(self, group: str, message: Message, check_at: float) -> None:
        fields = {
            "id": message.id,
            "group": group,
            "state": PREPARED,
            "holder": "",
            "check_at": repr(check_at),
            "checks": 0,
            "topic": message.topic,
            "key": json.dumps(message.key),
            "headers": json.dumps(dict(message.headers)),
            "body": message.body,
            "content_type": message.content_type,
            "created_at": repr(message.timestamp),
        }
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._h(message.id), mapping=fields)  # type: ignore[arg-type]
            pipe.zadd(f"{self.prefix}due:{group}", {message.id: check_at})
            pipe.zadd(f"{self.prefix}all", {message.id: message.timestamp})
            await pipe.execute()

    async def begin_commit(
        self, id: str, holder: str, lease: float, *, held_by: str | None = None
    ) -> Message | None:
        args = [self.prefix, id, holder, repr(time.time() + lease), held_by or ""]
        flat = await self._begin_commit(keys=[self._h(id)], args=args)
        return _record(id, flat).message if flat else None

    async def finish_commit(self, id: str, holder: str) -> bool:
        args = [self.prefix, id, holder, repr(time.time())]
        return bool(await self._finish_commit(keys=[self._h(id)], args=args))

    async def resolve(
        self, id: str, state: str, *, held_by: str | None = None, reason: str | None = None
    ) -> bool:
        args = [self.prefix, id, state, held_by or "", reason or "", repr(time.time())]
        return bool(await self._resolve(keys=[self._h(id)], args=args))

    async def claim_due(
        self, group: str, holder: str, now: float, interval: float, limit: int
    ) -> list[HalfRecord]:
        args = [self.prefix, repr(now), repr(now + interval), holder, str(limit)]
        flats = await self._claim(keys=[f"{self.prefix}due:{group}"], args=args)
        records = [_record(None, flat) for flat in flats]
        return sorted(records, key=lambda r: r.message.timestamp)

    async def get(self, id: str) -> HalfRecord | None:
        flat = await self.client.hgetall(self._h(id))
        return _record(id, flat) if flat else None

    async def records(
        self, group: str | None = None, *, resolved: bool = False, limit: int = 1000
    ) -> list[HalfRecord]:
        out: list[HalfRecord] = []
        start, page = 0, 500
        while len(out) < limit:
            ids = await self.client.zrange(f"{self.prefix}all", start, start + page - 1)
            if not ids:
                break
            start += page
            for record in await self._fetch([_text(i) for i in ids]):
                if (group is None or record.group == group) and (
                    resolved or record.state in ACTIVE
                ):
                    out.append(record)
        return out[:limit]

    async def purge_resolved(self, older_than: float) -> int:
        purged, start, page = 0, 0, 500
        while ids := await self.client.zrange(f"{self.prefix}all", start, start + page - 1):
            gone = [
                r.message.id
                for r in await self._fetch([_text(i) for i in ids])
                if r.state not in ACTIVE and (r.resolved_at or 0) < older_than
            ]
            if gone:  # resolved records never change again, so deleting them is safe
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.delete(*(self._h(i) for i in gone))
                    pipe.zrem(f"{self.prefix}all", *gone)
                    await pipe.execute()
            purged += len(gone)
            start += page - len(gone)
        return purged

    async def _fetch(self, ids: list[str]) -> list[HalfRecord]:
        async with self.client.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self._h(i))
            flats = await pipe.execute()
        return [_record(i, f) for i, f in zip(ids, flats, strict=True) if f]

    async def close(self) -> None:
        if self._owns:
            await self.client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(id: str | None, raw: Any) -> HalfRecord:
    """A record from HGETALL (a dict) or a script's reply (a flat list of name, value)."""
    if isinstance(raw, list):
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    f = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}

    def s(name: str) -> str:
        value = f.get(name, b"")
        return value.decode() if isinstance(value, bytes) else str(value)

    message = Message(
        topic=s("topic"),
        body=bytes(f.get("body", b"")),
        id=id or s("id"),
        key=json.loads(s("key")),
        headers=json.loads(s("headers")),
        content_type=s("content_type"),
        timestamp=float(s("created_at")),
    )
    return HalfRecord(
        message=message,
        group=s("group"),
        state=s("state"),
        checks=int(s("checks")),
        check_at=float(s("check_at")),
        holder=s("holder") or None,
        resolved_at=float(s("resolved_at")) if s("resolved_at") else None,
        reason=s("reason") or None,
    )
