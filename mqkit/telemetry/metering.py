"""Whether mqkit measures, and with which instruments: once the application installs an
OpenTelemetry MeterProvider of an SDK (or `--metrics-port` installs one, prometheus.py),
mqkit records its metrics (instruments.py); until then it records nothing.

Like `tracing.tracer()`, `instruments()` is on every publish: one dictionary lookup while
OpenTelemetry's metrics API is not imported, one global read and a type check after.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from mqkit.telemetry.instruments import Instruments

_made: tuple[MeterProvider, Instruments] | None = None


def instruments() -> Instruments | None:
    """mqkit's instruments from the installed MeterProvider, or None while there is none."""
    global _made
    api = sys.modules.get("opentelemetry.metrics")
    if api is None:
        return None
    provider = api.get_meter_provider()
    # The API's own providers (the proxy that stands in until one is set, the no-op one)
    # record nothing: only an SDK's is worth the cost.
    if type(provider).__module__.startswith("opentelemetry.metrics"):
        return None
    if _made is None or _made[0] is not provider:
        from mqkit.telemetry.instruments import Instruments

        _made = (provider, Instruments(provider))
    return _made[1]
