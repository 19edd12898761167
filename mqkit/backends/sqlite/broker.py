"""`sqlite:///path/to.db`: the embedded, durable default backend.

One database file holds every topic. It is safe for several processes on one machine: SQLite
in WAL mode serialises writers, each claim runs in one write transaction, and a consumer that
dies simply lets its leases run out. `PRAGMA data_version` tells a process when another one
committed, so consumers wake within a few milliseconds without hammering the file.

Every call goes to one thread that owns the connection (connection.py). Calls that arrive
while it is busy are run together in a single transaction, so many concurrent publishes or
acks cost one commit (group commit) instead of one each.

URL options: lease (30s), retention (7d), synchronous (normal|full), busy_timeout (30s),
poll (5ms), max_message_bytes (2MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from mqkit import options
from mqkit.backends.sqlite.connection import Connection
from mqkit.backends.sqlite.engine import SqliteEngine
from mqkit.capabilities import Capabilities
from mqkit.errors import BrokerUnavailableError, ClosedError, ConfigurationError
from mqkit.lag import Lag
from mqkit.leasing import LeasingBroker
from mqkit.message import Message
from mqkit.urls import mask

log = logging.getLogger("mqkit")


def database_path(url: str) -> Path:
    """The file of a sqlite URL, read the way SQLAlchemy reads it: `sqlite:///relative.db`,
    `sqlite:////absolute.db`."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"sqlite URLs have no host: use sqlite:///relative/path.db or "
            f"sqlite:////absolute/path.db, not {mask(url)!r}"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigurationError(f"sqlite URL names no file: {mask(url)!r}")
    return Path(path).expanduser()


SYNCHRONOUS = options.choice(
    "synchronous", "normal", ("normal", "full"), "full also survives power loss, at a cost"
)
RETENTION = options.duration("retention", "7d", "messages older than this are deleted")
POLL = options.duration("poll", "5ms", "how often other processes' commits are looked for")
BUSY_TIMEOUT = options.duration("busy_timeout", "30s", "how long a write waits for the lock")


class SqliteBroker(LeasingBroker):
    SYSTEM = "mqkit.sqlite"
    engine: SqliteEngine
    capabilities = Capabilities(
        durable=True,
        consumer_groups=True,
        redelivery=True,
        ordered_by_key=True,
        delayed_delivery=True,
        replay=True,
        selective_ack=True,
        lag=True,
        lag_in_flight=True,
        lag_age=True,
    )

    OPTIONS = (*LeasingBroker.OPTIONS, SYNCHRONOUS, RETENTION, POLL, BUSY_TIMEOUT)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = database_path(url)
        self.retention = self.option(RETENTION)
        self.poll = self.option(POLL)
        self._connection = Connection(
            self.path,
            synchronous=self.option(SYNCHRONOUS).upper(),
            busy_timeout=self.option(BUSY_TIMEOUT),
        )
        self.engine = SqliteEngine(self._connection, url)
        self._background: list[asyncio.Task[None]] = []

    async def _start(self) -> None:
        if not self.path.parent.exists():
            raise BrokerUnavailableError(
                f"cannot open {self.safe_url}: directory {self.path.parent} does not exist"
            )
        self._connection.start()
        try:
            await self.engine.apply_retention(self.retention)
        except BrokerUnavailableError as exc:
            await self._connection.close()
            raise BrokerUnavailableError(
                f"cannot open {self.safe_url}: {exc.__cause__ or exc}"
            ) from exc
        self._background = [
            asyncio.create_task(self._watch_other_processes(), name="mqkit-sqlite-watch"),
            asyncio.create_task(self._retention_loop(), name="mqkit-sqlite-retention"),
        ]

    async def _close(self) -> None:
        await self._close_subscriptions()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, ClosedError):
                await task
        await self._connection.close()

    async def _send(self, messages: Sequence[Message], delay: float | None) -> None:
        await self.engine.append(messages, delay)

    async def _lag(self, topic: str, group: str) -> Lag:
        return await self.engine.lag(topic, group)

    async def _watch_other_processes(self) -> None:
        """Wake local consumers when another process commits (publish, ack, nack)."""
        last = await self.engine.data_version()
        while True:
            await asyncio.sleep(self.poll if self._subscriptions else 0.2)
            if not self._subscriptions:
                continue
            try:
                version = await self.engine.data_version()
            except BrokerUnavailableError:
                continue
            if version != last:
                last = version
                self.engine.signal.notify()

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.retention / 10)))
            try:
                await self.engine.apply_retention(self.retention)
            except BrokerUnavailableError:
                log.warning("mqkit: retention on %s failed; will try again", self.safe_url)
