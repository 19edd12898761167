"""Broker URLs: parsing options from the query string, and masking secrets for display."""

from __future__ import annotations

import functools
import re
from urllib.parse import parse_qsl, unquote_plus, urlsplit, urlunsplit

from mqkit.errors import ConfigurationError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|kb|mib|mb|gib|gb)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def scheme_of(url: str) -> str:
    if "://" not in url:
        raise ConfigurationError(f"not a broker URL (expected scheme://...): {mask(url)!r}")
    return url.split("://", 1)[0].lower()


# Query keys whose values are credentials, by the words their names are made of
# (`sasl_plain_password`, `access_token`, `X-Amz-Signature`, `api_key`, `client_secret`).
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pass", "pwd", "token", "secret", "key", "apikey", "signature",
     "sig", "credential", "credentials", "auth", "authorization", "session", "jwt"}
)  # fmt: skip
_WORD = re.compile(r"[^a-z0-9]+")
MASKED = "***"


def is_secret_key(name: str) -> bool:
    """Whether a query parameter called `name` carries a credential."""
    lowered = name.lower()
    words = set(_WORD.split(lowered))
    return bool(words & _SECRET_WORDS) or lowered.endswith(("password", "token", "secret"))


# Cached: brokers name their URL in every publish's deadline message, and masking parses it.
@functools.lru_cache(maxsize=512)
def mask(url: str) -> str:
    """The URL safe for errors, logs, tables and JSON: the userinfo password and every
    secret-looking query value replaced by ***. For http(s), where a lone user name is
    usually a token (https://TOKEN@host), the whole userinfo is masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            if has_password:
                userinfo = f"{user}:{MASKED}"
            elif parts.scheme.lower() in ("http", "https") and user:
                userinfo = MASKED
            netloc = f"{userinfo}@{host}"
        query = "&".join(_mask_pair(pair) for pair in parts.query.split("&"))
        if netloc == parts.netloc and query == parts.query:
            return url
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<unparseable URL>"


def _mask_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    return f"{name}={MASKED}" if eq and is_secret_key(unquote_plus(name)) else pair


def mask_in(text: str, url: str) -> str:
    """`text` (an error from a client that quotes the URL) with `url` shown masked."""
    return text.replace(url, mask(url)) if url in text else text


def host_ports(url: str, default_port: int) -> list[tuple[str, int]]:
    """The servers a URL names (`redis+cluster://u:p@a:7000,b:7001,c`), each port defaulted;
    a ConfigurationError, the URL masked, for one that is not host[:port]."""
    servers = []
    for server in urlsplit(url).netloc.rpartition("@")[2].split(","):
        host, colon, port = server.rpartition(":")
        if not colon:
            host, port = server, str(default_port)
        if not host or not port.isdigit():
            raise ConfigurationError(f"{server!r} in {mask(url)} is not host:port")
        servers.append((host, int(port)))
    return servers


def query_options(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def parse_duration(value: str | float, *, name: str = "duration") -> float:
    """Seconds from 30, '30s', '500ms', '5m', '2h' or '7d'."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ConfigurationError(f"{name}: cannot read {value!r} as a duration (e.g. 30s, 500ms)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_size(value: str | int, *, name: str = "size") -> int:
    """Bytes from 1048576, '1MiB', '512kb'."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ConfigurationError(f"{name}: cannot read {value!r} as a size (e.g. 1MiB)")
    unit = (match.group(2) or "b").lower()
    return int(match.group(1)) * _SIZE_UNITS[unit]
