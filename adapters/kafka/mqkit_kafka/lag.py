"""A group's lag on Kafka: per partition of the topic and of the group's retry topic, the end
offset minus the group's committed offset (the beginning offset where it committed none: a
new group starts at the earliest). A record counts until its offset is committed, so those
in flight are in the count, not told apart.

Topics are looked up by listing them: asking for a missing topic's metadata would create it
where the brokers auto-create topics, with none of the settings mqkit gives its topics."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from mqkit.lag import Lag


async def group_lag(
    admin: AIOKafkaAdminClient,
    offsets: AIOKafkaConsumer,
    topic: str,
    retry_topic: str,
    group: str,
) -> Lag:
    existing = await admin.list_topics()
    named = [t for t in (topic, retry_topic) if t in existing]
    partitions = [
        TopicPartition(described["topic"], p["partition"])
        for described in (await admin.describe_topics(named) if named else [])
        for p in described["partitions"]
    ]
    if not partitions:
        return Lag(topic, group, waiting=0)
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    ends = await offsets.end_offsets(partitions)
    starts = await offsets.beginning_offsets(partitions)
    waiting = 0
    for tp in partitions:
        done = committed.get(tp)
        position = done.offset if done is not None and done.offset >= 0 else starts[tp]
        waiting += max(0, ends[tp] - max(position, starts[tp]))
    return Lag(topic, group, waiting=waiting)
