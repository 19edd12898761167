"""Moved: `RedisHalfStore` lives in the Redis adapter now, `mqkit_redis.half` (pip install
"mqkit[redis]"), built on its one client factory. This name keeps working until 0.3."""

import warnings

from mqkit_redis.half import RedisHalfStore

warnings.warn(
    "mqkit.half.redis moved to mqkit_redis.half; import RedisHalfStore from there",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["RedisHalfStore"]
