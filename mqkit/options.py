"""URL options, declared: each backend names the options it reads, with their type, default
and meaning, and the ones it hands to its client library. Anything else in a URL's query
string is a ConfigurationError naming it and the known ones, so a typo such as
`?publish_timout=2s` fails at once instead of doing nothing.

    LEASE = duration("lease", "30s", "how long a claimed message stays hidden")

    class MyBroker(Broker):
        OPTIONS = (*Broker.OPTIONS, LEASE)
        ...
        self.lease = self.option(LEASE)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mqkit.errors import ConfigurationError
from mqkit.urls import parse_duration, parse_size

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Option(Generic[T]):
    """One URL option: `parse(text, name)` turns its query-string text into a value."""

    name: str
    default: str
    parse: Callable[[str, str], T]
    doc: str

    def read(self, options: Mapping[str, str]) -> T:
        return self.parse(options.get(self.name, self.default), self.name)


def duration(name: str, default: str, doc: str, *, positive: bool = False) -> Option[float]:
    def parse(text: str, name: str) -> float:
        seconds = parse_duration(text, name=name)
        if positive and seconds <= 0:
            raise ConfigurationError(f"{name} must be > 0, not {text!r}")
        return seconds

    return Option(name, default, parse, doc)


def size(name: str, default: str, doc: str) -> Option[int]:
    return Option(name, default, lambda text, name: parse_size(text, name=name), doc)


def integer(name: str, default: str, doc: str, *, minimum: int = 0) -> Option[int]:
    def parse(text: str, name: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigurationError(f"{name}: {text!r} is not a whole number") from None
        if value < minimum:
            raise ConfigurationError(f"{name} must be >= {minimum}, not {value}")
        return value

    return Option(name, default, parse, doc)


def text(name: str, default: str, doc: str) -> Option[str]:
    return Option(name, default, lambda value, _: value, doc)


def choice(name: str, default: str, choices: Collection[str], doc: str) -> Option[str]:
    def parse(value: str, name: str) -> str:
        if value.lower() not in choices:
            raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value.lower()

    return Option(name, default, parse, doc)


def read_options(
    given: Mapping[str, str],
    declared: Iterable[Option[Any]],
    *,
    client: Collection[str] = (),
    where: str,
) -> dict[str, Any]:
    """Every declared option's value (given, else its default); an option that is neither
    declared nor one the client library takes is an error naming it and the known ones."""
    declared = list(declared)
    known = {o.name for o in declared} | set(client)
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"unknown option {name!r} in {where}{hint} (known: {', '.join(sorted(known))})"
            )
    return {o.name: o.read(given) for o in declared}


# -- the options every backend reads ------------------------------------------------------------
MAX_MESSAGE_BYTES = size(
    "max_message_bytes", "2MiB", "a larger message raises MessageTooLargeError before sending"
)
PUBLISH_TIMEOUT = duration(
    "publish_timeout", "10s", "a publish not confirmed by then raises PublishTimeoutError"
)
COMMON: tuple[Option[Any], ...] = (MAX_MESSAGE_BYTES, PUBLISH_TIMEOUT)
