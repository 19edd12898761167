"""Webhooks: Standard Webhooks signatures and the SSRF guard (the fan-out builds on these)."""

from mqkit.errors import SsrfError, WebhookVerificationError
from mqkit.webhooks.signing import Secret, sign, verify
from mqkit.webhooks.ssrf import SsrfGuard, Target

__all__ = [
    "Secret",
    "SsrfError",
    "SsrfGuard",
    "Target",
    "WebhookVerificationError",
    "sign",
    "verify",
]
