"""The SSRF guard refuses every non-public spelling of an address, and the allow-list lets
exactly what it names through."""

from __future__ import annotations

import pytest

from mqkit.webhooks.ssrf import SsrfError, SsrfGuard

REFUSED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://localhost:8080/hook", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),  # cloud metadata
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[fec0::1]/", "site-local"),  # deprecated site-local, still routed in places
    ("http://[fefe::1]/", "site-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://100.64.0.1/", "not globally routable"),  # shared address space (CGNAT)
    ("http://[::ffff:127.0.0.1]/", "inside"),  # v4-mapped
    ("http://[::ffff:10.0.0.1]/", "inside"),
    ("http://[64:ff9b::7f00:1]/", "inside"),  # NAT64 of 127.0.0.1
    ("http://[2002:7f00:1::]/", "inside"),  # 6to4 of 127.0.0.1
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one integer
    ("http://0x7f000001/", "loopback"),  # ... in hex
    ("http://0177.0.0.1/", "loopback"),  # ... with an octal octet
    ("http://127.1/", "loopback"),  # ... shortened
    ("ftp://93.184.216.34/", "only http and https"),
    ("http:///path", "no host"),
    ("http://no-such-host.invalid/", "cannot resolve"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_refused(url: str, reason: str) -> None:
    with pytest.raises(SsrfError, match=reason):
        await SsrfGuard().check(url)


async def test_a_public_address_passes_with_its_port() -> None:
    target = await SsrfGuard().check("https://93.184.216.34/hooks")
    assert (target.host, target.port, target.addresses) == (
        "93.184.216.34",
        443,
        ("93.184.216.34",),
    )
    target = await SsrfGuard().check("http://[2606:4700::1111]:8080/")
    assert target.port == 8080 and target.addresses == ("2606:4700::1111",)


async def test_the_allow_list_lets_through_what_it_names_and_nothing_else() -> None:
    guard = SsrfGuard(allow=["127.0.0.1/32"])
    target = await guard.check("http://127.0.0.1:9000/hook")
    assert target.addresses == ("127.0.0.1",)
    for url in (
        "http://127.0.0.2/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/",
    ):
        with pytest.raises(SsrfError):
            await guard.check(url)


async def test_dns_rebinding_between_check_and_connect_reaches_nothing() -> None:
    """A resolver that answers a public address for the check and 127.0.0.1 afterwards
    (DNS rebinding): the connection asks the guard again, so nothing reaches loopback."""
    import asyncio
    import socket
    from typing import Any

    from mqkit.webhooks.client import WebhookClient

    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    answers = ["93.184.216.34"]  # then 127.0.0.1, for ever

    async def rebinding(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host != "rebind.example":
            return await socket_getaddrinfo(host, *args, **kwargs)
        address = answers.pop(0) if answers else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    socket_getaddrinfo = loop.getaddrinfo
    loop.getaddrinfo = rebinding  # type: ignore[method-assign]
    client = WebhookClient(SsrfGuard(), timeout=2.0)
    try:
        response = await client.post(f"http://rebind.example:{port}/hook", b"{}", {})
    finally:
        loop.getaddrinfo = socket_getaddrinfo  # type: ignore[method-assign]
        await client.close()
        server.close()
        await server.wait_closed()
    assert connections == 0
    assert response.status is None and response.refused, response
    assert "loopback" in (response.error or "")


async def test_a_resolver_that_never_answers_is_given_up_on() -> None:
    """An unreachable DNS server: the check ends with a reason, not with the resolver."""
    import asyncio
    from typing import Any

    loop = asyncio.get_running_loop()

    async def silent(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    socket_getaddrinfo = loop.getaddrinfo
    loop.getaddrinfo = silent  # type: ignore[method-assign]
    try:
        with pytest.raises(SsrfError, match=r"cannot resolve quiet.example \(no answer within"):
            await SsrfGuard(resolve_timeout=0.2).check("http://quiet.example/")
    finally:
        loop.getaddrinfo = socket_getaddrinfo  # type: ignore[method-assign]
