"""`mqkit.connect(url)`: find the backend for a URL scheme; and, the same way, the stores and
limiters that live in adapters.

Backends register in the entry-point group `mqkit.brokers`, keyed by scheme, so installing
an adapter distribution (mqkit-kafka, ...) is all it takes. Idempotency stores, half-message
stores and shared limiters kept in a broker's server register in `mqkit.idempotency_stores`,
`mqkit.half_stores` and `mqkit.limiters` (mqkit-redis provides `redis://` for all three).
The core never imports a broker client.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from mqkit.broker import Broker
from mqkit.errors import ConfigurationError, UnknownSchemeError
from mqkit.paths import default_database
from mqkit.settings import configured_url, default_url
from mqkit.urls import scheme_of

ENTRY_POINT_GROUP = "mqkit.brokers"
IDEMPOTENCY_STORES = "mqkit.idempotency_stores"
HALF_STORES = "mqkit.half_stores"
LIMITERS = "mqkit.limiters"

# Used when mqkit runs from a source tree that was never installed (no entry points).
_BUILT_IN = {
    "memory": "mqkit.backends.memory:MemoryBroker",
    "sqlite": "mqkit.backends.sqlite:SqliteBroker",
}

# Which distribution provides the stores and limiters for a scheme (only mqkit-redis does).
_PLUGIN_PACKAGES = {
    scheme: "mqkit-redis"
    for scheme in (
        "redis",
        "rediss",
        "unix",
        "redis+sentinel",
        "rediss+sentinel",
        "redis+cluster",
        "rediss+cluster",
    )
}

# The stores the core provides itself, found by scheme like those adapters register.
_SQL_HALF_STORE = "mqkit.half.sql:SqlHalfStore"
_BUILT_IN_PLUGINS: dict[str, dict[str, str]] = {
    HALF_STORES: {
        scheme: _SQL_HALF_STORE
        for scheme in ("postgresql", "postgres", "postgresql+psycopg", "sqlite", "sqlite+aiosqlite")
    },
}

# Which distribution provides a scheme, for the error when it is missing.
KNOWN_PACKAGES = {
    "kafka": "mqkit-kafka",
    "amqp": "mqkit-rabbitmq",
    "amqps": "mqkit-rabbitmq",
    "redis": "mqkit-redis",
    "rediss": "mqkit-redis",
    "redis+pubsub": "mqkit-redis",
    "rediss+pubsub": "mqkit-redis",
    "redis+pubsub+sentinel": "mqkit-redis",
    "rediss+pubsub+sentinel": "mqkit-redis",
    "redis+pubsub+cluster": "mqkit-redis",
    "rediss+pubsub+cluster": "mqkit-redis",
    "redis+sentinel": "mqkit-redis",
    "rediss+sentinel": "mqkit-redis",
    "redis+cluster": "mqkit-redis",
    "rediss+cluster": "mqkit-redis",
}


@cache
def _installed() -> dict[str, str]:
    found = dict(_BUILT_IN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def available_schemes() -> list[str]:
    return sorted(_installed())


def _install_hint(package: str | None) -> str:
    if package is None:
        return ""
    return f"; install {package} (pip install 'mqkit[{package.removeprefix('mqkit-')}]')"


def broker_class(scheme: str) -> type[Broker]:
    target = _installed().get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in available_schemes())
        hint = _install_hint(KNOWN_PACKAGES.get(scheme))
        raise UnknownSchemeError(f"no backend for {scheme}:// (installed: {known}){hint}")
    module_name, _, attr = target.partition(":")
    module = __import__(module_name, fromlist=[attr])
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Broker)):
        raise ConfigurationError(f"entry point {scheme} -> {target} is not a mqkit Broker")
    return cls


@cache
def _plugins(group: str) -> dict[str, str]:
    found = dict(_BUILT_IN_PLUGINS.get(group, {}))
    found.update((ep.name, ep.value) for ep in entry_points(group=group))
    return found


def plugin(group: str, url: str, what: str) -> Any:
    """The class registered in `group` for `url`'s scheme, by an adapter (e.g. the Redis
    idempotency store for redis://) or the core itself (the SQL half-message store); a
    clear error naming what to install when there is none."""
    scheme = scheme_of(url)
    target = _plugins(group).get(scheme)
    if target is None:
        hint = _install_hint(_PLUGIN_PACKAGES.get(scheme))
        known = ", ".join(f"{s}://" for s in sorted(_plugins(group))) or "none installed"
        raise UnknownSchemeError(f"no {what} for {scheme}:// ({known}){hint}")
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def create(url: str | None = None) -> Broker:
    """A broker for `url` (default: MQKIT_URL or the embedded sqlite file), not yet started."""
    url = configured_url(url)
    return broker_class(scheme_of(url))(url)


def connect(url: str | None = None) -> Broker:
    """A broker for `url`, to be used as `async with mqkit.connect(url) as broker:`.

    Without a URL: MQKIT_URL, else the embedded default (`sqlite:///` + the user's data
    directory). Also `broker = await mqkit.connect(url).start()`.
    """
    broker = create(url)
    if broker.url == default_url():
        # Only the default location is created on demand; a typo in an explicit path
        # should fail rather than start an empty queue somewhere unexpected.
        default_database().parent.mkdir(parents=True, exist_ok=True)
    return broker
