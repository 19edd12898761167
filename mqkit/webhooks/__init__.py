"""Webhooks: Standard Webhooks signatures (more of issue 6 builds on this)."""

from mqkit.webhooks.signing import Secret, WebhookVerificationError, sign, verify

__all__ = ["Secret", "WebhookVerificationError", "sign", "verify"]
