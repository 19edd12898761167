"""Moved: the worker is the package mqkit.worker now (App, Stats, SubscriberSpec,
RateLimit). `mqkit.App` is unchanged; these names keep working here until 0.3."""

import warnings
from typing import Any

_MOVED = {"App", "Stats", "SubscriberSpec", "RateLimit"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"mqkit.app.{name} moved to mqkit.worker.{name}", DeprecationWarning, stacklevel=2
        )
        import mqkit.worker

        return getattr(mqkit.worker, name)
    raise AttributeError(f"module 'mqkit.app' has no attribute {name!r}")
