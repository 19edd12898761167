"""Moved: `RedisStore` lives in the Redis adapter now, `mqkit_redis.idempotency` (pip install
"mqkit[redis]"), built on its one client factory. This name keeps working until 0.3."""

import warnings

from mqkit_redis.idempotency import RedisStore

warnings.warn(
    "mqkit.idempotency.redis moved to mqkit_redis.idempotency; import RedisStore from there",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["RedisStore"]
