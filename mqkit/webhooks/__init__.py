"""Webhooks: Standard Webhooks signatures and the SSRF guard (the fan-out builds on these)."""

from mqkit.webhooks.signing import Secret, WebhookVerificationError, sign, verify
from mqkit.webhooks.ssrf import SsrfError, SsrfGuard, Target

__all__ = [
    "Secret",
    "SsrfError",
    "SsrfGuard",
    "Target",
    "WebhookVerificationError",
    "sign",
    "verify",
]
