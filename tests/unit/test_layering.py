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


def _our_modules() -> dict[str, Path]:
    roots = [ROOT / "mqkit", *sorted((ROOT / "adapters").glob("*/mqkit_*"))]
    found: dict[str, Path] = {}
    for root in roots:
        for path in root.rglob("*.py"):
            parts = path.relative_to(root.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in _our_modules().values()
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}, long


def _imports_at_import_time(tree: ast.Module, modules: set[str]) -> set[str]:
    """The modules of ours a module imports when it is imported: top level, outside `if
    TYPE_CHECKING:` blocks (imports inside functions run later and make no cycle)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        nested = [node] if not isinstance(node, (ast.If, ast.Try)) else list(ast.walk(node))
        for item in nested:
            if isinstance(item, ast.Import):
                found.update(a.name for a in item.names if a.name in modules)
            elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
                subs = {f"{item.module}.{a.name}" for a in item.names}
                found.update(subs & modules or ({item.module} & modules))
    return found


def test_no_import_cycles() -> None:
    modules = _our_modules()
    graph = {
        name: _imports_at_import_time(ast.parse(path.read_text()), set(modules))
        for name, path in modules.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], cycles
