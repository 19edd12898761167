"""Broker URLs: parsing options from the query string, and masking secrets for display."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

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


def mask(url: str) -> str:
    """The URL with any password replaced by ***, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


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
