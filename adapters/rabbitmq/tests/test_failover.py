"""A URL naming several RabbitMQ hosts: one URL per host, each with everything else."""

from __future__ import annotations

from mqkit_rabbitmq.broker import RabbitBroker
from mqkit_rabbitmq.failover import hosts


def test_each_host_keeps_the_credentials_vhost_and_options() -> None:
    assert hosts("amqp://u:p%40ss@a:5681,b:5682,c/vh?heartbeat=5") == [
        "amqp://u:p%40ss@a:5681/vh?heartbeat=5",
        "amqp://u:p%40ss@b:5682/vh?heartbeat=5",
        "amqp://u:p%40ss@c/vh?heartbeat=5",
    ]
    assert hosts("amqp://localhost/") == ["amqp://localhost/"]


def test_several_hosts_mean_quorum_queues_unless_told() -> None:
    cluster = "amqp://g:g@a:5681,b:5682/vh"
    assert RabbitBroker(cluster).queue_args == {"x-queue-type": "quorum"}
    assert RabbitBroker("amqp://g:g@a:5681/vh").queue_args == {"x-queue-type": "classic"}
    assert RabbitBroker(cluster + "?queue_type=classic").queue_args == {"x-queue-type": "classic"}
