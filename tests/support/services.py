"""The servers `scripts/services up` starts (MQKIT_TEST_*_URL override where they are), and
stopping, killing and starting them from a test."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

URLS = {
    "kafka": os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092"),
    "rabbitmq": os.environ.get(
        "MQKIT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/mqkit-test"
    ),
    "redis": os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}
REDIS = URLS["redis"]
# The replicated clusters (scripts/services up clusters), for the tests marked `cluster`.
CLUSTER_URLS = {
    "kafka-cluster": os.environ.get(
        "MQKIT_TEST_KAFKA_CLUSTER_URL", "kafka://127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    ),
    "rabbitmq-cluster": os.environ.get(
        "MQKIT_TEST_AMQP_CLUSTER_URL",
        "amqp://guest:guest@127.0.0.1:5681,127.0.0.1:5682,127.0.0.1:5683/mqkit-test",
    ),
    "redis-sentinel": os.environ.get(
        "MQKIT_TEST_REDIS_SENTINEL_URL",
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/mqkit/0",
    ),
    "redis-cluster": os.environ.get(
        "MQKIT_TEST_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
    ),
}
# Three Kafka nodes in network namespaces of their own (scripts/services up kafka-netns), for
# the partition case; not among `clusters`: the case starts and stops it.
KAFKA_NETNS = os.environ.get(
    "MQKIT_TEST_KAFKA_NETNS_URL", "kafka://10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
)
POSTGRES = os.environ.get(
    "MQKIT_TEST_POSTGRES_URL", "postgresql://mqkit:mqkit@127.0.0.1:5432/mqkit"
)


def store_params(names: list[str]) -> list[object]:
    """pytest params for a fixture named by backend: those that are clusters
    (CLUSTER_URLS, e.g. redis-sentinel) marked `cluster`."""
    return [
        pytest.param(name, marks=pytest.mark.cluster) if name in CLUSTER_URLS else name
        for name in names
    ]


async def services(command: str, name: str, *node: str) -> str:
    """Run scripts/services COMMAND NAME [NODE] (restart, kill, up, which) and fail loudly if
    it fails; what it printed on stdout (the node, for kill and which on a cluster)."""
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "services"),
        command,
        name,
        *node,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, (out + err).decode()
    return out.decode().strip()


def backend_url(backend: str, tmp_path: Path) -> str:
    """A URL per backend for the worker cases. Leased backends return a dead worker's
    messages when its lease runs out: 5 s here (default 30 s) so a case does not wait."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}?lease=5s"
    if backend == "redis":
        return URLS["redis"] + "?lease=5s"
    return URLS[backend]


async def rabbitmq_cluster_consumers(queue: str, vhost: str = "mqkit-test") -> int:
    """How many consumers the RabbitMQ cluster counts on `queue`, asked of a running node."""
    for node in (1, 2, 3):
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl", "-n", f"mqkit-{node}@localhost", "-q", "list_queues", "-p", vhost,
            "name", "consumers", "--no-table-headers",
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await process.communicate()
        if process.returncode == 0:
            for line in out.decode().splitlines():
                name, _, count = line.rpartition("\t")
                if name == queue:
                    return int(count)
            raise AssertionError(f"the cluster has no queue {queue}")
    raise AssertionError("no RabbitMQ cluster node answers")
