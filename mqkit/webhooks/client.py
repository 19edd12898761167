"""The HTTP side of a delivery: one POST, its outcome, nothing followed.

aiohttp, not httpx: posting 1 KB bodies to a local endpoint at concurrency 64 on this 2-core
machine, aiohttp made 5,818 requests/s and httpx.AsyncClient 174 (benchmarks/webhook_clients.py),
and the dispatcher's target is 5,000 deliveries/s.

The SSRF guard sits in two places: before every attempt (the URL's host is resolved and
checked), and in the connection pool's resolver, so every connection the client opens goes
to an address the guard has just checked (a DNS answer that changes after the first check
cannot redirect it). Redirects are never followed, proxies from the environment never used.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from mqkit.errors import SsrfError
from mqkit.telemetry import tracing
from mqkit.urls import mask, mask_in
from mqkit.webhooks.ssrf import SsrfGuard

DEFAULT_TIMEOUT = 15.0
EXCERPT = 1024
USER_AGENT = "mqkit-webhooks/1"


@dataclass(frozen=True, slots=True)
class Response:
    """What an attempt got: a status, or an error (timeout, refused, connection failed)."""

    status: int | None
    latency_ms: float
    body: bytes = b""
    retry_after: str | None = None
    error: str | None = None
    refused: bool = False  # by the SSRF guard: retrying cannot help until someone acts

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Refused(OSError):
    """The guard refused an address while a connection was being opened (aiohttp wraps
    what a resolver raises, so this type is how the refusal is told apart)."""


class _GuardedResolver(AbstractResolver):
    def __init__(self, guard: SsrfGuard) -> None:
        self.guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self.guard.addresses(host, port)
        except SsrfError as exc:
            raise _Refused(f"refused by the SSRF guard: {exc}") from None
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing held."""


class WebhookClient:
    """Posts deliveries through one pooled session. `timeout` bounds a whole attempt."""

    def __init__(
        self,
        guard: SsrfGuard | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = 512,
    ) -> None:
        self.guard = guard or SsrfGuard()
        self.timeout = timeout
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                resolver=_GuardedResolver(self.guard),
                use_dns_cache=False,  # every new connection asks the guard again
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
                trace_configs=_tracing(),
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        session = self._open()
        started = time.perf_counter()

        def took() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            await self.guard.check(url)
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                content = await response.content.read(EXCERPT)
                if not response.content.at_eof():
                    response.close()  # a big answer is not worth reading; drop the connection
                return Response(
                    response.status, took(), content, response.headers.get("Retry-After")
                )
        except SsrfError as exc:
            return Response(None, took(), error=str(exc), refused=True)
        except TimeoutError:
            return Response(None, took(), error=f"timed out after {self.timeout:g}s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _Refused):
                return Response(None, took(), error=str(exc.os_error), refused=True)
            return Response(None, took(), error=_error_text(exc, url))
        except (aiohttp.ClientError, OSError) as exc:
            return Response(None, took(), error=_error_text(exc, url))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.sleep(0)  # let aiohttp's transports finish closing


def _tracing() -> list[aiohttp.TraceConfig]:
    """OpenTelemetry's aiohttp instrumentation, once a TracerProvider is installed: a client
    span per attempt (a child of the dispatcher's `process` span), `traceparent` sent along.
    Endpoint URLs may carry tokens: the span gets the URL masked."""
    if tracing.tracer() is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return [create_trace_config(url_filter=lambda url: mask(str(url)))]


def _error_text(exc: BaseException, url: str) -> str:
    """What went wrong, for the attempt log: some client errors quote the whole URL."""
    return mask_in(f"{type(exc).__name__}: {exc}", url)[:500]
