"""Rate limits: GCRA in this process (`LocalLimiter`) or shared through Redis
(`mqkit_redis.limiter.RedisLimiter`, in the Redis adapter).

    limiter = LocalLimiter("200/s", burst=50)
    await acquire(limiter, "tenant-7")                      # waits its turn
    permit = await limiter.reserve("tenant-7", max_wait=0)  # or asks, for a 429
"""

from mqkit.errors import PublishBackpressureError, RateLimitedError
from mqkit.ratelimit.limiter import Limiter, Permit, Rate, acquire
from mqkit.ratelimit.local import LocalLimiter
from mqkit.ratelimit.publisher import PacedPublisher

__all__ = [
    "Limiter",
    "LocalLimiter",
    "PacedPublisher",
    "Permit",
    "PublishBackpressureError",
    "Rate",
    "RateLimitedError",
    "acquire",
]
