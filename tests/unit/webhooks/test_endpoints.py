"""The endpoint registry, the retry schedule and Retry-After, in-process."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from mqkit.errors import MqkitError
from mqkit.webhooks import Secret
from mqkit.webhooks.endpoints import Endpoint, EndpointNotFound, EndpointRegistry
from mqkit.webhooks.schedule import MAX_RETRY_AFTER, SVIX, Schedule, retry_after


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[EndpointRegistry]:
    r = EndpointRegistry(f"sqlite:///{tmp_path / 'hooks.db'}")
    yield r
    await r.close()


async def test_add_update_disable_remove(registry: EndpointRegistry) -> None:
    e = await registry.add(Endpoint(url="https://example.com/h", topics=["orders", "pay.*"]))
    assert e.id.startswith("ep_") and len(e.signing_secrets()) == 1
    assert e.matches("orders") and e.matches("pay.refund") and not e.matches("ordersx")
    updated = await registry.update(e.id, rate_limit=20.0, description="shop")
    assert (await registry.get(e.id)) == updated
    assert (await registry.set_enabled(e.id, False, "maintenance")).disabled_reason == "maintenance"
    assert not await registry.disable_if_enabled(e.id, "again")  # already disabled
    enabled = await registry.set_enabled(e.id, True)
    assert enabled.enabled and enabled.disabled_reason is None
    await registry.remove(e.id)
    with pytest.raises(EndpointNotFound):
        await registry.get(e.id)
    with pytest.raises(EndpointNotFound):
        await registry.remove(e.id)


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "ftp://example.com", "topics": ["a"]},
        {"url": "https://example.com", "topics": []},
        {"url": "https://example.com", "topics": ["a"], "secrets": [("whsec_YWJj", None)]},
        {"url": "https://example.com", "topics": ["a"], "max_concurrency": 0},
        {"url": "https://example.com", "topics": ["a"], "rate_limit": -1},
    ],
)
def test_invalid_endpoints_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Endpoint.model_validate(fields)


async def test_an_update_is_validated_before_it_is_stored(registry: EndpointRegistry) -> None:
    e = await registry.add(Endpoint(url="https://example.com/h", topics=["a"]))
    with pytest.raises(ValidationError):
        await registry.update(e.id, url="file:///etc/passwd")
    assert (await registry.get(e.id)).url == "https://example.com/h"


async def test_rotation_keeps_the_old_secret_for_the_overlap(registry: EndpointRegistry) -> None:
    e = await registry.add(Endpoint(url="https://example.com/h", topics=["a"]))
    [old] = e.signing_secrets()
    new = Secret.generate()
    rotated = await registry.rotate_secret(e.id, new, overlap=60)
    assert [s.text for s in rotated.signing_secrets()] == [new.text, old.text]
    assert [s.text for s in rotated.signing_secrets(now=time.time() + 61)] == [new.text]
    # A second rotation does not extend the first one's overlap.
    again = await registry.rotate_secret(e.id, overlap=3600)
    old_expiry = dict(again.secrets)[old.text]
    assert old_expiry is not None and old_expiry <= time.time() + 60


def test_the_default_schedule_is_svix_with_jitter() -> None:
    s = Schedule()
    assert s.attempts == 8 and s.waits == SVIX
    rng = random.Random(1)
    waits = [s.wait_before(n, rng) for n in range(1, 9)]
    assert waits[0] == 0
    for got, base in zip(waits[1:], SVIX[1:], strict=True):
        assert base * 0.8 <= got <= base * 1.2
    assert Schedule.parse("0,5s,5m").waits == (0.0, 5.0, 300.0)
    with pytest.raises(MqkitError, match="cannot read 'soon'"):
        Schedule.parse("0,soon")


def test_retry_after_forms() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("99999999") == MAX_RETRY_AFTER
    now = time.time()
    when = email.utils.formatdate(now + 30, usegmt=True)
    got = retry_after(when, now=now)
    assert got is not None and 28 <= got <= 31


def test_an_attempt_row_has_every_field() -> None:
    from dataclasses import asdict

    from mqkit.webhooks.attempts import Attempt, attempts_table

    attempt = Attempt("ep_1", "m1", "orders", 2, 1.5, 503, False, 12.5, "retrying", "e", "r")
    assert attempt.row() == asdict(attempt)
    assert set(attempt.row()) == {c.name for c in attempts_table.columns} - {"seq"}
