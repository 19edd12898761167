"""Standard Webhooks signatures: interop with the independent `standardwebhooks` package
both ways, rotation, and every way a delivery can be wrong."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as TheirError

from mqkit.webhooks import Secret, WebhookVerificationError, sign, verify

ALPHABET = 'abcXYZ019 \t\n\r{}[]",:\\/é漢字🙂\u00a0\u2028\u200b'


def bodies(n: int) -> list[str]:
    rng = random.Random(5)
    out = ["", " ", "\n", '{"a": 1}', ' {"a":1} \n']
    while len(out) < n:
        out.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 300))))
    return out


def test_mqkit_and_standardwebhooks_verify_each_other_over_1000_bodies() -> None:
    secret = Secret.generate()
    theirs = Webhook(secret.text)
    now = int(time.time())
    for i, body in enumerate(bodies(1000)):
        msg_id = f"msg_{i}"
        # They sign, we verify.
        signature = theirs.sign(msg_id, datetime.fromtimestamp(now, UTC), body)
        headers = {
            "Webhook-Id": msg_id,
            "Webhook-Timestamp": str(now),
            "Webhook-Signature": signature,
        }
        assert verify(secret, headers, body.encode()) == msg_id
        # We sign, they verify.
        ours = sign(secret, msg_id, body.encode(), timestamp=now)
        assert theirs.verify(body.encode(), ours, json_parse=False) is None
        assert ours["webhook-signature"] == signature


def test_rotation_signs_with_both_and_either_verifies() -> None:
    old, new = Secret.generate(), Secret.generate()
    headers = sign([old, new], "msg_1", b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(old, headers, b"{}") == "msg_1"
    assert verify([new], headers, b"{}") == "msg_1"
    assert Webhook(new.text).verify(b"{}", headers, json_parse=False) is None
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(Secret.generate(), headers, b"{}")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing webhook-id"),
        (lambda h, b: ({}, b), "missing webhook-id, webhook-timestamp, webhook-signature"),
        (lambda h, b: (h, b[:-1] + b"x"), "no signature matches"),  # one byte of the body
        (lambda h, b: ({**h, "webhook-id": "msg_2"}, b), "no signature matches"),
        (lambda h, b: ({**h, "webhook-timestamp": "12.5"}, b), "not an integer"),
        (
            lambda h, b: ({**h, "webhook-timestamp": "١٢٣"}, b),
            "not an integer",
        ),  # digits, not ASCII
        (lambda h, b: ({**h, "webhook-signature": "garbage"}, b), "no v1 signature"),
        (lambda h, b: ({**h, "webhook-signature": "v1,"}, b), "no v1 signature"),
        (lambda h, b: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b), "no v1"),
        (lambda h, b: ({**h, "webhook-signature": "v1," + "A" * 10_000}, b), "too long"),
        (lambda h, b: ({**h, "webhook-id": "x" * 10_000}, b), "too long"),
    ],
)
def test_a_wrong_delivery_is_refused_with_its_reason(change, reason) -> None:  # type: ignore[no-untyped-def]
    secret = Secret.generate()
    body = b'{"order": 1}'
    headers, changed = change(sign(secret, "msg_1", body), body)
    with pytest.raises(WebhookVerificationError, match=reason):
        verify(secret, headers, changed)


def test_timestamps_outside_the_tolerance_are_refused_both_ways() -> None:
    secret = Secret.generate()
    now = time.time()
    for offset, ok in ((-299, True), (299, True), (-301, False), (301, False)):
        headers = sign(secret, "msg_1", b"x", timestamp=int(now) + offset)
        if ok:
            assert verify(secret, headers, b"x", now=now) == "msg_1"
        else:
            with pytest.raises(WebhookVerificationError, match=r"too old|in the future"):
                verify(secret, headers, b"x", now=now)


def test_standardwebhooks_raises_valueerror_not_its_own_error_on_a_malformed_header() -> None:
    """The quirk the issue mentions, kept as a fact: mqkit's verify raises its own error."""
    secret = Secret.generate()
    headers = {**sign(secret, "msg_1", b"x"), "webhook-signature": "garbage"}
    with pytest.raises(ValueError) as caught:
        Webhook(secret.text).verify(b"x", headers, json_parse=False)
    assert not isinstance(caught.value, TheirError)


def test_secrets_are_checked_and_never_printed() -> None:
    secret = Secret.generate()
    assert secret.text.startswith("whsec_") and len(secret.key) == 32
    assert Secret(secret.text) == secret and Secret(secret.text.removeprefix("whsec_")) == secret
    assert "whsec_***" in repr(secret) and secret.text not in repr(secret)
    with pytest.raises(ValueError, match="base64"):
        Secret("whsec_not base64!")
    with pytest.raises(ValueError, match="24 to 64 bytes"):
        Secret("whsec_" + "QUJD")
