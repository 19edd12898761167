"""Whether mqkit traces, and with which tracer: once the application installs an
OpenTelemetry TracerProvider, mqkit makes spans (spans.py) and carries their context in each
message's headers (propagation.py); until then it makes nothing and adds no header.

`tracer()` is on every publish, so it costs one dictionary lookup while the application has
not imported OpenTelemetry (it cannot have installed a provider), and one global read and a
type check after; mqkit imports OpenTelemetry itself only once there is a provider.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from mqkit._version import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

_made: tuple[TracerProvider, Tracer] | None = None


def tracer() -> Tracer | None:
    """mqkit's tracer from the installed TracerProvider, or None while there is none."""
    global _made
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    provider = api.get_tracer_provider()
    if isinstance(provider, api.ProxyTracerProvider):
        return None
    # Made again only when the provider changes (tests install one each).
    if _made is None or _made[0] is not provider:
        _made = (provider, provider.get_tracer("mqkit", __version__))
    return _made[1]
