"""Reading a group's committed offsets without taking "the coordinator is still loading them"
for "none committed".

aiokafka (0.14) asks with OffsetFetch v2 or v3, whose answer has an error for the whole
group beside each partition's, and reads only the partitions' errors. A coordinator that is
loading the group's offsets (its broker just restarted, or the group just moved to it)
answers COORDINATOR_LOAD_IN_PROGRESS for the group and no offset for any partition, which
aiokafka takes for nothing committed (None, 5 and 13 times in two restarts here): the
consumer then starts the partition where `auto_offset_reset` says, and an exactly-once
copier that went back to the beginning copied 16,528 records twice in the Kafka-bounce
chaos case. Fitted to each of mqkit's consumers (aiokafka itself is left as it is), this
raises the group's error instead, and aiokafka tries again as it does for a partition's.
"""

from __future__ import annotations

import logging
from typing import Any

import aiokafka.errors as errors
from aiokafka import AIOKafkaConsumer
from aiokafka.protocol.commit import OffsetFetchRequest

log = logging.getLogger("mqkit.kafka")
# The coordinator is elsewhere now: forget it, and find it again.
MOVED = (errors.NotCoordinatorForGroupError, errors.GroupCoordinatorNotAvailableError)


def heed_group_errors(consumer: AIOKafkaConsumer) -> None:
    """Make a started consumer's offset fetches fail on an error for the whole group."""
    coordinator = consumer._coordinator
    send = coordinator._send_req

    async def checked(request: Any) -> Any:
        response = await send(request)
        if isinstance(request, OffsetFetchRequest):
            error = errors.for_code(getattr(response, "error_code", 0))
            if error is not errors.NoError:
                log.info("mqkit: committed offsets not to be had yet (%s); again", error.__name__)
                if issubclass(error, MOVED):
                    coordinator.coordinator_dead()  # find the coordinator again
                raise error()
        return response

    coordinator._send_req = checked
