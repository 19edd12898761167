"""Where prepared (half) messages wait: the store protocol and its record.

A half message moves through states, each change a compare-and-set in the store, so a
producer and any number of checkers never act on it twice:

    prepared --commit--> committing --published--> committed
    prepared --rollback--> rolled_back
    prepared --UNKNOWN too often--> dead_lettered (a copy is on <topic>.dlq)

`holder` says who may act on a message right now: the committer, or the checker that claimed
it for a check-back. `check_at` is when a checker should look at it next: the check timeout
after prepare, the check interval after each check, the commit lease while committing (a
committer that dies mid-commit is finished by a checker). Resolved records are kept for a
while (so a late commit learns what happened) and then purged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from mqkit.message import Message

PREPARED, COMMITTING = "prepared", "committing"
COMMITTED, ROLLED_BACK, DEAD_LETTERED = "committed", "rolled_back", "dead_lettered"
ACTIVE = (PREPARED, COMMITTING)


class Resolution(Enum):
    """What a producer's check says about a half message's local transaction."""

    COMMIT = "commit"
    ROLLBACK = "rollback"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class HalfRecord:
    message: Message
    group: str
    state: str
    checks: int
    check_at: float
    holder: str | None = None
    resolved_at: float | None = None
    reason: str | None = None


class HalfStore(Protocol):
    async def prepare(self, group: str, message: Message, check_at: float) -> None:
        """Store a new prepared message (durably, before returning)."""

    async def begin_commit(
        self, id: str, holder: str, lease: float, *, held_by: str | None = None
    ) -> Message | None:
        """prepared -> committing, held by `holder` for `lease` seconds; the message, or None
        when it is not prepared (or, with `held_by`, not held by that checker)."""

    async def finish_commit(self, id: str, holder: str) -> bool:
        """committing -> committed, if `holder` still holds it."""

    async def resolve(
        self, id: str, state: str, *, held_by: str | None = None, reason: str | None = None
    ) -> bool:
        """prepared -> rolled_back or dead_lettered (with `held_by`: only if that checker
        holds it); False when it was not prepared."""

    async def claim_due(
        self, group: str, holder: str, now: float, interval: float, limit: int
    ) -> list[HalfRecord]:
        """Active messages of `group` whose check_at has passed, now held by `holder` until
        now + interval; prepared ones count one more check. Two checkers never get the same
        message at once."""

    async def get(self, id: str) -> HalfRecord | None: ...

    async def records(
        self, group: str | None = None, *, resolved: bool = False, limit: int = 1000
    ) -> list[HalfRecord]:
        """Active messages (or, with `resolved`, also resolved ones), oldest first."""

    async def purge_resolved(self, older_than: float) -> int:
        """Forget messages resolved before this time (epoch seconds); the number purged."""

    async def close(self) -> None: ...
