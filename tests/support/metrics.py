"""Metrics for the tests: the OpenTelemetry SDK's MeterProvider installed as an application
would, read in memory, and ways to look at the points."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.test.globals_test import reset_metrics_globals


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """An SDK MeterProvider, installed as the global one, read in memory."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    try:
        yield reader
    finally:
        reset_metrics_globals()


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def by(reader: InMemoryMetricReader, name: str, key: str) -> dict[str, float]:
    """The values of `name`, summed by the attribute `key`."""
    found: dict[str, float] = {}
    for point in points(reader, name):
        label = str(point.attributes.get(key))
        found[label] = found.get(label, 0) + point.value
    return found
