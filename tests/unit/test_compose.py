"""compose/ is validated by parsing (no Docker engine here): it must agree with
scripts/services on ports, and every service needs a healthcheck."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
CLUSTER_COMPOSE = ROOT / "compose" / "docker-compose.cluster.yml"
SERVICES = ROOT / "scripts" / "services.d"


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def script_text() -> str:
    return "\n".join(part.read_text() for part in sorted(SERVICES.glob("*.sh")))


def script_ports() -> dict[str, int]:
    found = dict(re.findall(r"\b([A-Z]+)_PORT=(\d+)", script_text()))
    return {name.lower(): int(port) for name, port in found.items()}


def cluster_ports(array: str) -> list[int]:
    """A port list of scripts/services.d, e.g. KAFKA_CLUSTER_PORTS=(19092 19093 19094)."""
    found = re.search(rf"^{array}=\(([\d ]+)\)", script_text(), re.MULTILINE)
    assert found, f"{array} is not in scripts/services.d"
    return [int(port) for port in found.group(1).split()]


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


def cluster_services(prefix: str) -> list[dict[str, Any]]:
    services = compose(CLUSTER_COMPOSE)["services"]
    return [services[name] for name in sorted(services) if re.fullmatch(rf"{prefix}-\d", name)]


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_cluster_topology_agrees_with_the_services_script() -> None:
    kafka = cluster_services("kafka")
    assert [int(n["environment"]["PORT"]) for n in kafka] == cluster_ports("KAFKA_CLUSTER_PORTS")
    for node in kafka:
        env = node["environment"]
        assert env["KAFKA_LISTENERS"].startswith(f"PLAINTEXT://127.0.0.1:{env['PORT']},")
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
    rabbitmq = [int(n["environment"]["RABBITMQ_NODE_PORT"]) for n in cluster_services("rabbitmq")]
    assert rabbitmq == cluster_ports("RABBITMQ_CLUSTER_PORTS")
    sentinel = cluster_services("redis-sentinel")
    assert [int(flag(n["command"], "--port")) for n in sentinel] == cluster_ports(
        "REDIS_SENTINEL_PORTS"
    )
    sentinels = [n["command"][-1] for n in cluster_services("sentinel")]
    assert [int(re.findall(r"--port (\d+)", c)[0]) for c in sentinels] == cluster_ports(
        "REDIS_SENTINEL_SENTINELS"
    )
    nodes = cluster_services("redis-cluster")
    assert [int(flag(n["command"], "--port")) for n in nodes] == cluster_ports(
        "REDIS_CLUSTER_PORTS"
    )
    for node in nodes:
        assert flag(node["command"], "--cluster-enabled") == "yes"


def test_every_cluster_node_is_on_loopback_with_a_healthcheck() -> None:
    data = compose(CLUSTER_COMPOSE)
    declared = set(data["volumes"])
    for name, service in data["services"].items():
        # Host networking: the addresses servers hand out must be the ones clients reach.
        assert service["network_mode"] == "host", name
        assert "ports" not in service, name
        if name != "redis-cluster-create":
            assert service["healthcheck"]["test"], name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in declared, f"{name}: {volume}"
    text = CLUSTER_COMPOSE.read_text()
    assert "0.0.0.0" not in text
    for line in text.splitlines():
        if "--bind" in line:
            assert '--bind", "127.0.0.1"' in line or "--bind 127.0.0.1" in line, line
