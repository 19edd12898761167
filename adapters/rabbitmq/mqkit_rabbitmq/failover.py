"""`amqp://user:pass@node1:5672,node2:5672,node3:5672/vhost`: a cluster named by several
hosts. The connection is to one node at a time: at first a random one (a quorum queue gets
its leader on the node that declares it, so clients spread the leaders), or the first listed
with `?host_order=listed` (a preferred node); after a loss the next one (the node just lost
goes to the back), and every host in turn until one answers. The robust connection then
re-declares the exchanges, queues and bindings on the node it reached and resumes every
consumer there, as it does after a restart of a single node."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aio_pika import RobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL


def hosts(url: str) -> list[str]:
    """One URL per host of `url`, each with its credentials, path and query."""
    parts = urlsplit(url)
    credentials, _, netloc = parts.netloc.rpartition("@")
    prefix = f"{credentials}@" if credentials else ""
    return [urlunsplit(parts._replace(netloc=prefix + host)) for host in netloc.split(",")]


class FailoverConnection(RobustConnection):
    def __init__(self, urls: Sequence[str], *, shuffle: bool = True, **kwargs: Any) -> None:
        self.hosts = tuple(URL(u) for u in urls)
        # Where the next attempt starts.
        self._next = random.randrange(len(self.hosts)) if shuffle else 0
        super().__init__(self.hosts[0], **kwargs)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        self._next = (self._next + 1) % len(self.hosts)
        await super()._on_connection_close(closing)

    # aio-pika's robust connection makes each attempt (the first one and every reconnection)
    # in this private method and nowhere else, with `self.url`: trying each host here is what
    # makes the whole of its recovery (channels, declarations, consumers) fail over. Tested
    # with aio-pika 10.2; the cluster conformance run fails if a release renames it.
    async def _RobustConnection__connect_transport(self) -> None:
        failure: BaseException | None = None
        for step in range(len(self.hosts)):
            at = (self._next + step) % len(self.hosts)
            self.url = self.hosts[at]
            try:
                await _connect_transport(self)
            except CONNECTION_EXCEPTIONS as exc:
                failure = exc
                continue
            self._next = at
            return
        assert failure is not None
        raise failure


_connect_transport = RobustConnection._RobustConnection__connect_transport  # type: ignore[attr-defined]
