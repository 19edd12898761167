"""The Lua scripts the Redis Streams backend runs in the server, so that what is due is
decided by the Redis server's clock, never the clients'."""

# Move entries that are due from a sorted set into a stream. KEYS: zset, stream.
# ARGV: maxlen ('' for none), how many at most. Returns {moved, ms until the next is due or -1}.
MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, key in ipairs(due) do
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then
    if ARGV[1] == '' then
      redis.call('XADD', KEYS[2], '*', unpack(fields))
    else
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
    end
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], key)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #nxt > 0 then wait = math.max(0, tonumber(nxt[2]) - now) end
return {#due, wait}
"""

# Park an entry until later, optionally acking the delivery it replaces, atomically. Its due
# time is rounded up to the millisecond (the due check rounds down): never early.
# KEYS: zset, hash for the entry, stream to ack. ARGV: delay ms, group ('' for no ack), id,
# then field, value, ...
SCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), KEYS[2])
if ARGV[2] ~= '' then redis.call('XACK', KEYS[3], ARGV[2], ARGV[3]) end
return 1
"""
