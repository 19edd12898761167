"""Standard Webhooks signatures (https://www.standardwebhooks.com): sign, and verify.

A delivery carries three headers: `webhook-id` (the message id, the same on every attempt),
`webhook-timestamp` (integer seconds, fresh per attempt) and `webhook-signature`: one or
more `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, space-separated, one per secret in
use (two while a secret is being rotated). Secrets are `whsec_` + base64 of 24 to 64 random
bytes; the HMAC key is those bytes.

Verification works on the raw body, compares in constant time, accepts a signature by any of
the receiver's secrets, and refuses timestamps more than `tolerance` seconds away from now
(in either direction), so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Mapping, Sequence

from mqkit.errors import WebhookVerificationError

PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300.0
# Headers beyond these sizes are refused before any HMAC is computed: a 10 KB signature
# header must cost the receiver nothing.
MAX_SIGNATURES = 8
MAX_SIGNATURE_HEADER = 1024
MAX_ID = 256


class Secret:
    """A signing secret: `Secret("whsec_...")`, or `Secret.generate()`."""

    def __init__(self, text: str) -> None:
        encoded = text.removeprefix(PREFIX)
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a webhook secret is whsec_ followed by base64") from None
        if not 24 <= len(key) <= 64:
            raise ValueError(f"a webhook secret holds 24 to 64 bytes, not {len(key)}")
        self.key = key
        self.text = PREFIX + encoded

    @classmethod
    def generate(cls, size: int = 32) -> Secret:
        return cls(PREFIX + base64.b64encode(os.urandom(size)).decode())

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The bare base64 HMAC of `id.timestamp.body`."""
        content = f"{msg_id}.{timestamp}.".encode() + body
        return base64.b64encode(hmac.new(self.key, content, hashlib.sha256).digest()).decode()

    def __repr__(self) -> str:  # never print the secret itself
        return "Secret(whsec_***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self.key, other.key)

    def __hash__(self) -> int:
        return hash(self.key)


def _secrets(secrets: Secret | str | Iterable[Secret | str]) -> list[Secret]:
    if isinstance(secrets, Secret | str):
        secrets = [secrets]
    return [s if isinstance(s, Secret) else Secret(s) for s in secrets]


def sign(
    secrets: Secret | str | Sequence[Secret | str],
    msg_id: str,
    body: bytes,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three headers for one delivery attempt, signed by every secret given."""
    ts = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(f"v1,{s.signature(msg_id, ts, body)}" for s in _secrets(secrets))
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signatures}


def verify(
    secrets: Secret | str | Sequence[Secret | str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """Check a delivery; returns its `webhook-id`, or raises WebhookVerificationError.
    Header names are matched case-insensitively, as HTTP has them."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id", "")
    stamp = lower.get("webhook-timestamp", "")
    header = lower.get("webhook-signature", "")
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", header),
        )
        if not value
    ]
    if missing:
        raise WebhookVerificationError("missing " + ", ".join(missing))
    if len(msg_id) > MAX_ID or len(header) > MAX_SIGNATURE_HEADER:
        raise WebhookVerificationError("webhook headers too long")
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not an integer")
    ts = int(stamp)
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is {'too old' if ts < current else 'in the future'}"
        )
    entries = (entry.partition(",") for entry in header.split(" "))
    offered = [value for version, _, value in entries if version == "v1" and value]
    offered = offered[:MAX_SIGNATURES]
    if not offered:
        raise WebhookVerificationError("no v1 signature in webhook-signature")
    for secret in _secrets(secrets):
        expected = secret.signature(msg_id, ts, body).encode()
        # Every offered signature is compared, so the time taken says nothing about a match.
        if any([hmac.compare_digest(expected, o.encode()) for o in offered]):
            return msg_id
    raise WebhookVerificationError("no signature matches")
