"""The trace context in a message's headers: W3C `traceparent` and `tracestate` (and
`baggage`), through OpenTelemetry's global propagator, so any instrumented client on any
backend continues the trace and mqkit continues theirs."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate
from opentelemetry.context import Context


def carrier(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` with the current trace context written in (a copy)."""
    out = dict(headers)
    propagate.inject(out)
    return out


def extract(headers: Mapping[str, str]) -> Context:
    """The trace context that `headers` carry (an empty one if none)."""
    return propagate.extract(headers)
