"""compose/docker-compose.observability.yml and what it mounts, validated by parsing (no
Docker engine here): Prometheus scrapes exactly the mqkit processes that serve metrics,
Grafana's provisioning finds the dashboard and its data source, the collector's pipeline is
whole, and every metric the dashboard queries is one the code exports (its Prometheus name,
read from a registry the instruments recorded into)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.metrics import Counter, Histogram, UpDownCounter
from opentelemetry.test.globals_test import reset_metrics_globals
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mqkit.telemetry import instruments, metering, prometheus

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
OBSERVABILITY = COMPOSE / "docker-compose.observability.yml"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "mqkit.json"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def services() -> dict[str, Any]:
    found: dict[str, Any] = load(OBSERVABILITY)["services"]
    return found


def metrics_port(service: dict[str, Any]) -> int | None:
    command = service.get("command", [])
    if "--metrics-port" not in command:
        return None
    return int(command[command.index("--metrics-port") + 1])


@pytest.fixture
def exported() -> Iterator[set[str]]:
    """The Prometheus sample names of every instrument mqkit makes, each recorded once."""
    registry = prometheus.install("test")
    try:
        meters = metering.instruments()
        assert meters is not None
        for instrument in vars(meters).values():
            if isinstance(instrument, Counter | UpDownCounter | instruments.Tally):
                instrument.add(1, {})
            elif isinstance(instrument, Histogram):
                instrument.record(0.1, {})
        for name, _, _ in instruments._GAUGES:
            meters.set(name, 1, {})
        text = generate_latest(registry).decode()
        yield {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    finally:
        reset_metrics_globals()


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metrics a PromQL expression reads: its names, less label matchers and groupings."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", expr)
    return set(re.findall(r"\b(?:messaging|mqkit)_\w+", expr))


def test_every_metric_the_dashboard_queries_is_exported(exported: set[str]) -> None:
    queried = {name for expr in queries() for name in metric_names(expr)}
    assert len(queried) >= 15, queried
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"


def test_every_label_the_dashboard_groups_by_is_an_attribute_mqkit_sets() -> None:
    """Attribute names as the source writes them (`"messaging.destination.name"`), in their
    Prometheus form; `le` is the histograms' own."""
    source = "\n".join(p.read_text() for p in (COMPOSE.parent / "mqkit").rglob("*.py"))
    named = re.findall(r'"((?:messaging|mqkit|error|http)\.[\w.]+)"', source)
    attributes = {a.replace(".", "_") for a in named}
    used = {
        label.strip()
        for expr in queries()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in group.split(",")
    } | {m.split("=")[0].rstrip("!") for e in queries() for m in re.findall(r"\{([^}]*)\}", e)}
    assert used - {"le"} <= attributes, f"not set by mqkit: {sorted(used - {'le'} - attributes)}"


def test_the_dashboard_covers_what_operators_watch() -> None:
    text = " ".join(queries())
    for needed in (
        "messaging_client_consumed_messages_total",  # throughput
        "histogram_quantile(0.5, ",
        "histogram_quantile(0.99, ",  # process duration p50 / p99
        "mqkit_consumer_lag",
        "mqkit_retries_total",
        "mqkit_dead_letters_total",
        "mqkit_outbox_lag_seconds",
        "mqkit_webhook_attempts_total",  # webhook outcomes
    ):
        assert needed in text, needed


def test_prometheus_scrapes_every_process_that_serves_metrics() -> None:
    config = load(COMPOSE / "prometheus" / "prometheus.yml")
    targets = {
        target for job in config["scrape_configs"] for group in job["static_configs"]
        for target in group["targets"]
    }  # fmt: skip
    serving = {f"{name}:{metrics_port(s)}" for name, s in services().items() if metrics_port(s)}
    assert targets == serving
    assert {"worker:9464", "outbox-relay:9464", "webhook-dispatcher:9464"} <= serving
    for name in ("worker", "outbox-relay", "webhook-dispatcher", "webhook-receiver"):
        command = services()[name]["command"]
        assert command[command.index("--metrics-host") + 1] == "0.0.0.0", name


def test_grafana_finds_its_data_source_and_dashboard() -> None:
    grafana = services()["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = COMPOSE / "grafana" / "provisioning"
    [source] = load(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    [provider] = load(provisioning / "dashboards" / "mqkit.yml")["providers"]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}


def test_traces_go_through_the_collector_to_jaeger() -> None:
    collector = load(COMPOSE / "otel" / "collector.yml")
    [pipeline] = collector["service"]["pipelines"].values()
    assert set(pipeline["receivers"]) <= set(collector["receivers"])
    assert set(pipeline["exporters"]) <= set(collector["exporters"])
    assert all(p in collector["processors"] for p in pipeline["processors"])
    [exporter] = (collector["exporters"][e] for e in pipeline["exporters"])
    assert exporter["endpoint"].split(":")[0] in services()
    endpoint = services()["worker"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4317"
    assert "4317" in collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]


def test_every_service_binds_to_loopback_with_a_healthcheck() -> None:
    data = load(OBSERVABILITY)
    for name, service in data["services"].items():
        assert service.get("healthcheck", {}).get("test"), name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE / source).exists(), f"{name}: {source}"
            elif not source.startswith("$"):
                assert source in data["volumes"], f"{name}: volume {source}"
