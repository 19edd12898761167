"""`--metrics-port`: an OpenTelemetry SDK MeterProvider whose metrics are read in the
Prometheus format, installed as the global one so that mqkit's instruments (and any the
application makes) record into it. Needs the `metrics` extra (the SDK and OpenTelemetry's
Prometheus exporter); the names are the exporter's standard conversion of the OTel names
(`messaging.process.duration` in s: `messaging_process_duration_seconds_bucket`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mqkit.errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def install(service: str) -> CollectorRegistry:
    """Install the provider; the registry to serve at /metrics. `service` is the resource's
    service.name (`target_info` in Prometheus)."""
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from prometheus_client import CollectorRegistry, ProcessCollector
    except ImportError as exc:
        raise ConfigurationError(
            f"--metrics-port needs the metrics extra: pip install 'mqkit[metrics]' ({exc.name} "
            "is missing)"
        ) from None
    current = metrics.get_meter_provider()
    if not type(current).__module__.startswith("opentelemetry.metrics"):
        raise ConfigurationError(
            "the application installed a MeterProvider of its own: give it a "
            "PrometheusMetricReader, or run without --metrics-port"
        )
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds
    reader = PrometheusMetricReader(registry=registry)
    resource = Resource.create({"service.name": service})
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=resource))
    return registry
