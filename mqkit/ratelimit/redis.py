"""Moved: `RedisLimiter` lives in the Redis adapter now, `mqkit_redis.limiter` (pip install
"mqkit[redis]"), built on its one client factory. This name keeps working until 0.3."""

import warnings

from mqkit_redis.limiter import RedisLimiter

warnings.warn(
    "mqkit.ratelimit.redis moved to mqkit_redis.limiter; import RedisLimiter from there",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["RedisLimiter"]
