"""The keys the Streams backend keeps beside a topic's stream (the stream's key is the topic
itself): a retry stream per group, delay sets, and parked entries waiting in them.

On one server their names are `mqkit:retry:<group>:<topic>`, `mqkit:delay[:<group>]:<topic>`
and `mqkit:parked:<uuid>`. On Redis Cluster every key a command or script touches must be in
one hash slot, and XREADGROUP reads a group's retry stream with the topic's stream, a nack
acks in one with the copy it adds, a script moves parked entries into the stream: so there
each name carries the topic in braces, its hash tag, and lands in the stream's slot
(`mqkit:{<topic>}:retry:<group>`, ...). The single-server names stay as they were, so an
upgrade finds the entries an older version parked."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from mqkit.errors import ConfigurationError


@dataclass(frozen=True)
class Keys:
    prefix: str
    clustered: bool

    def retry(self, topic: str, group: str) -> str:
        if self.clustered:
            return f"{self.prefix}{self._tag(topic)}:retry:{group}"
        return f"{self.prefix}retry:{group}:{topic}"

    def delay(self, topic: str, group: str | None = None) -> str:
        if self.clustered:
            return f"{self.prefix}{self._tag(topic)}:delay" + (f":{group}" if group else "")
        return f"{self.prefix}delay:{group}:{topic}" if group else f"{self.prefix}delay:{topic}"

    def parked(self, topic: str) -> str:
        if self.clustered:
            return f"{self.prefix}{self._tag(topic)}:parked:{uuid.uuid4().hex}"
        return f"{self.prefix}parked:{uuid.uuid4().hex}"

    def _tag(self, topic: str) -> str:
        # A topic with braces of its own would hash by them, and no tag mqkit adds could
        # follow it to the same slot in every case.
        if "{" in topic or "}" in topic:
            raise ConfigurationError(
                f"topic {topic!r}: names with braces cannot be used on Redis Cluster"
            )
        return f"{{{topic}}}"
