"""Long-running services beside an App's subscribers: the outbox relay, the half-message
checker, the webhook dispatcher, or your own. One lifecycle for all of them, so one process
(`mqkit run`) starts them with the App and stops them on the same signal:

    app.add_service(lambda broker: OutboxRelay("postgresql://app@db/app", broker))
    app.add_service(lambda broker: HalfChecker(broker, store, check, group="orders"))

A service runs until the stop event is set and then returns, finishing what it holds;
`close()` releases what it owns. The App gives them its `shutdown_timeout`, like in-flight
handlers, then cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from mqkit.broker import Broker

log = logging.getLogger("mqkit")


@runtime_checkable
class Service(Protocol):
    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then return."""

    async def close(self) -> None:
        """Release what the service owns (connections, engines)."""


# A service, or what makes one from the App's broker (which exists only once it runs).
ServiceSpec = Service | Callable[[Broker], Service]


class RunningServices:
    """The services of one App run: started together, stopped together."""

    def __init__(self, specs: Sequence[ServiceSpec], broker: Broker) -> None:
        self.services = [s if isinstance(s, Service) else s(broker) for s in specs]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for service in self.services:
            task = asyncio.create_task(self._run(service), name=f"mqkit-{type(service).__name__}")
            self._tasks.append(task)

    async def _run(self, service: Service) -> None:
        try:
            await service.run(self._stop)
        except asyncio.CancelledError:
            raise
        except Exception:  # one failing service must not take the others down unseen
            log.exception("mqkit: service %s failed", type(service).__name__)

    async def stop(self, timeout: float) -> None:
        """Ask every service to stop, give them `timeout` seconds, cancel the rest, close."""
        self._stop.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout)
            for task in late:
                log.warning(
                    "mqkit: %s did not stop within %.0fs; cancelled", task.get_name(), timeout
                )
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for service in self.services:
            try:
                await service.close()
            except Exception:
                log.exception("mqkit: closing service %s failed", type(service).__name__)
