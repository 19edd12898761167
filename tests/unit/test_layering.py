"""The core never imports a broker client: every module under mqkit/ reaches Redis, Kafka and
RabbitMQ only through the adapters, found by URL scheme."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

import mqkit
from mqkit.registry import HALF_STORES, IDEMPOTENCY_STORES, LIMITERS, plugin

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ("redis", "aiokafka", "aio_pika", "aiormq", "kafka", "confluent_kafka", "pika")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_of_the_core_imports_a_broker_client() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & set(CLIENTS))
        for path in (ROOT / "mqkit").rglob("*.py")
        if _imports(path) & set(CLIENTS)
    }
    assert offenders == {}


def test_redis_stores_and_the_limiter_are_found_by_scheme() -> None:
    from mqkit_redis.half import RedisHalfStore
    from mqkit_redis.idempotency import RedisStore
    from mqkit_redis.limiter import RedisLimiter

    assert plugin(IDEMPOTENCY_STORES, "redis://h/0", "store") is RedisStore
    assert plugin(HALF_STORES, "rediss://h/0", "store") is RedisHalfStore
    assert plugin(LIMITERS, "redis://h/0", "limiter") is RedisLimiter
    with pytest.raises(mqkit.UnknownSchemeError, match="no store for kafka://"):
        plugin(HALF_STORES, "kafka://h:9092", "store")


def test_the_old_import_paths_still_work_with_a_deprecation_warning() -> None:
    import importlib
    import sys

    for old, name in (
        ("mqkit.idempotency.redis", "RedisStore"),
        ("mqkit.half.redis", "RedisHalfStore"),
        ("mqkit.ratelimit.redis", "RedisLimiter"),
    ):
        sys.modules.pop(old, None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        assert getattr(module, name).__module__.startswith("mqkit_redis.")
        assert any(issubclass(w.category, DeprecationWarning) for w in caught), old


def test_test_modules_import_helpers_only_from_tests_support() -> None:
    tests = ROOT / "tests"
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in _modules(path)
            if name.startswith("tests.")
            and not name.startswith("tests.support")
            and name != "tests.chaos.worker"  # a program the chaos cases start
        )
        for path in tests.rglob("*.py")
        if "support" not in path.parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found
