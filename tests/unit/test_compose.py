"""compose/ is validated by parsing (no Docker engine here): it must agree with
scripts/services on ports, and every service needs a healthcheck."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
SERVICES = ROOT / "scripts" / "services"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def script_ports() -> dict[str, int]:
    text = SERVICES.read_text()
    found = dict(re.findall(r"\b([A-Z]+)_PORT=(\d+)", text))
    return {name.lower(): int(port) for name, port in found.items()}


def test_ports_agree_with_the_services_script() -> None:
    ports = script_ports()
    assert set(ports) >= {"redis", "rabbitmq", "postgres", "kafka"}
    services = compose()["services"]
    for name in ("redis", "rabbitmq", "postgres", "kafka"):
        published = {int(p.split(":")[-1]) for p in services[name]["ports"]}
        host_sides = {p.split(":")[0] for p in services[name]["ports"]}
        assert ports[name] in published, f"{name}: compose publishes {published}"
        assert host_sides == {"127.0.0.1"}, f"{name} must bind to loopback only"


def test_every_service_has_a_healthcheck_and_named_volumes() -> None:
    data = compose()
    for name, service in data["services"].items():
        assert "healthcheck" in service and service["healthcheck"]["test"], name
    declared = set(data["volumes"])
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_kafka_versions_agree() -> None:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    assert version is not None
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_worker_image_builds_from_files_that_exist() -> None:
    worker = compose()["services"]["worker"]
    dockerfile = COMPOSE.parent / worker["build"]["context"] / worker["build"]["dockerfile"]
    assert dockerfile.resolve().is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
