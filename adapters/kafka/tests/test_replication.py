"""The replication mqkit gives the topics it creates, by cluster size."""

from __future__ import annotations

import os
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from mqkit_kafka.broker import majority

import mqkit

CLUSTER = os.environ.get(
    "MQKIT_TEST_KAFKA_CLUSTER_URL", "kafka://127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
)


def test_min_insync_is_a_majority_that_survives_one_broker_down() -> None:
    assert [majority(n) for n in (1, 2, 3, 4, 5)] == [1, 1, 2, 3, 3]


@pytest.mark.cluster
async def test_on_three_brokers_topics_have_three_replicas_two_in_sync() -> None:
    topic = f"replicated-{uuid.uuid4().hex[:8]}"
    async with mqkit.connect(CLUSTER) as broker:
        await broker.publish(topic, b"x")
    admin = AIOKafkaAdminClient(bootstrap_servers=CLUSTER.removeprefix("kafka://"))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        replicas = {len(p["replicas"]) for p in described["partitions"]}
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})]
        )
        configs = {c[0]: c[1] for c in response.resources[0][4]}
    finally:
        await admin.close()
    assert replicas == {3}
    assert configs["min.insync.replicas"] == "2"
