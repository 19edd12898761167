"""What a webhook dispatcher counts (in the one stats shape, mqkit.stats)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mqkit.stats import Counters


@dataclass
class DispatchStats(Counters):
    delivered: int = 0
    failed_attempts: int = 0
    exhausted: int = 0
    refused: int = 0  # attempts the SSRF guard refused (not retried)
    deferred: int = 0
    disabled: list[str] = field(default_factory=list)
