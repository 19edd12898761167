"""`--metrics-port` and `--metrics-host`, which every long-running command takes (`mqkit
run`, `outbox relay`, `half checker`, `webhook dispatch|serve`): /metrics, /healthz and
/readyz served for as long as the command runs (mqkit.telemetry.probes)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

import typer

from mqkit.errors import BrokerUnavailableError

if TYPE_CHECKING:  # probes.py imports starlette and prometheus_client: the metrics extra
    from mqkit.broker import Broker
    from mqkit.telemetry.probes import Readiness

log = logging.getLogger("mqkit")

LOCAL = "127.0.0.1"  # metrics tell about the system: served to this machine unless widened

MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve /metrics (Prometheus), /healthz and /readyz on this port.",
    ),
]
MetricsHostOption = Annotated[
    str,
    typer.Option("--metrics-host", help="Where --metrics-port listens; 0.0.0.0 for all."),
]


async def _always() -> str | None:
    return None


@contextlib.asynccontextmanager
async def endpoint(
    port: int | None, host: str, service: str, ready: Readiness = _always
) -> AsyncIterator[None]:
    """With a port: mqkit's metrics on (installed before anything is measured: enter this
    before the work starts) and served with the probes; without one, nothing."""
    if port is None:
        yield
        return
    from mqkit import http_server
    from mqkit.telemetry import prometheus

    registry = prometheus.install(service)
    from mqkit.telemetry.probes import probes  # the metrics extra is there: install() passed

    async with http_server.serving(probes(registry, ready), host, port) as server:
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        log.info("mqkit: metrics on http://%s:%s/metrics (and /healthz, /readyz)", host, bound)
        yield


def broker_ready(broker: Broker) -> Readiness:
    """Readiness for a command whose work is its broker's: the broker answers."""

    async def ready() -> str | None:
        try:
            await broker.check()
        except BrokerUnavailableError as exc:
            return str(exc)
        return None

    return ready
