"""The SSRF guard: a webhook endpoint must be a public address, unless explicitly allowed.

Endpoint URLs come from users, so a dispatcher that POSTs wherever it is told can be pointed
at the cloud metadata service, the database next door or its own admin port. Before every
attempt the guard resolves the host the way the connection will (so `2130706433`,
`0x7f000001`, `0177.0.0.1` and `127.1` are all 127.0.0.1), and refuses the attempt if any
address it resolves to is not globally routable: loopback, private, shared (CGNAT),
link-local, multicast, reserved, unspecified, IPv6 site-local (fec0::/10, deprecated but
still routed inside some networks), and IPv6 forms that embed such an IPv4
address (v4-mapped, NAT64, 6to4, Teredo). The caller connects to the addresses returned, so
a DNS answer that changes between the check and the connection cannot slip through.

`allow` names networks (CIDR) that are accepted anyway: for local development, and for the
tests, which then still prove that everything else is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from mqkit.errors import SsrfError
from mqkit.urls import mask

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Unresolved(SsrfError):
    """The host did not resolve (refused too: nothing was checked)."""


@dataclass(frozen=True)
class Target:
    """Where an attempt may connect: the URL's host and port, and the checked addresses."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def why_refused(address: IPAddress) -> str | None:
    """None for a globally routable unicast address, else what it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = why_refused(embedded)
            return f"{inner} (inside {address})" if inner else None
        if address.is_site_local:  # ipaddress counts fec0::/10 as global
            return "site-local"
    for test, name in (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
    ):
        if test:
            return name
    if not address.is_global:  # e.g. 100.64.0.0/10, shared address space
        return "not globally routable"
    return None


# A resolver that never answers (an unreachable DNS server) would otherwise hold a delivery,
# and the endpoint's slot, for as long as the system resolver retries.
RESOLVE_TIMEOUT = 10.0


class SsrfGuard:
    def __init__(self, allow: Iterable[str] = (), resolve_timeout: float = RESOLVE_TIMEOUT) -> None:
        self.allow = [ipaddress.ip_network(n, strict=False) for n in allow]
        self.resolve_timeout = resolve_timeout
        self._literals: dict[str, tuple[str, ...]] = {}

    def allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allow)

    async def check(self, url: str) -> Target:
        """Resolve the URL's host and check every address; the target to connect to."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise SsrfError(f"refused {mask(url)!r}: only http and https endpoints")
        host = parts.hostname
        if not host:
            raise SsrfError(f"refused {mask(url)!r}: no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise SsrfError(f"refused {mask(url)!r}: bad port") from None
        try:
            addresses = await self.addresses(host, port)
        except SsrfError as exc:
            raise type(exc)(f"refused {mask(url)!r}: {exc}") from None
        return Target(parts.scheme, host, port, addresses)

    async def precheck(self, url: str) -> str | None:
        """For storing an endpoint: raise SsrfError when its host is an address the guard
        refuses (an IP literal in any spelling: it can never become deliverable); for a
        name that resolves to a refused address today, a warning (DNS may change; every
        attempt checks again); else None, also for a name that does not resolve yet."""
        try:
            await self.check(url)
        except Unresolved:
            return None
        except SsrfError as exc:
            host = urlsplit(url).hostname or ""
            if host and not _is_numeric(host):
                return f"{exc}; deliveries will be refused while it resolves there"
            raise SsrfError(
                f"{exc}: the SSRF guard refuses it (to deliver to a network on purpose, "
                "allow it with --allow CIDR here and on `mqkit webhook dispatch`)"
            ) from None
        return None

    async def addresses(self, host: str, port: int) -> tuple[str, ...]:
        """Resolve `host` and check every address it has; the addresses, in resolver order.
        An IP literal's verdict cannot change, so it is computed once."""
        known = self._literals.get(host)
        if known is not None:
            return known
        try:
            async with asyncio.timeout(self.resolve_timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except (socket.gaierror, UnicodeError) as exc:
            raise Unresolved(f"cannot resolve {host} ({exc})") from None
        except TimeoutError:
            raise Unresolved(
                f"cannot resolve {host} (no answer within {self.resolve_timeout:g}s)"
            ) from None
        addresses: list[str] = []
        for *_, sockaddr in infos:
            text = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 zone id is not part of it
            address = ipaddress.ip_address(text)
            reason = None if self.allowed(address) else why_refused(address)
            if reason:
                raise SsrfError(f"{host} is {address}, {reason}")
            if text not in addresses:
                addresses.append(text)
        if not addresses:
            raise SsrfError(f"{host} has no address")
        if _is_literal(host) and len(self._literals) < 10_000:
            self._literals[host] = tuple(addresses)
        return tuple(addresses)


def _is_numeric(host: str) -> bool:
    """An address in any spelling the resolver reads without DNS (127.1, 0x7f000001)."""
    try:
        socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
