"""redis+sentinel:// URLs: the Sentinels, the master's name, the database, credentials."""

from __future__ import annotations

import pytest
from mqkit_redis.sentinel import SentinelTarget, parse

from mqkit.errors import ConfigurationError


def test_the_sentinels_master_and_database() -> None:
    assert parse("redis+sentinel://u:p%40ss@s1:26379,s2:26380,s3/mqkit/2?prefix=x:") == (
        SentinelTarget(
            sentinels=[("s1", 26379), ("s2", 26380), ("s3", 26379)],
            master="mqkit",
            db=2,
            username="u",
            password="p@ss",
            tls=False,
        )
    )
    assert parse("rediss+sentinel://s1/m").db == 0
    assert parse("rediss+sentinel://s1/m").tls


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://s1:26379", "names the Sentinels and the master"),
        ("redis+sentinel://u:secret@s1/m/zero", "is not a number"),
    ],
)
def test_what_is_missing_is_said_with_the_password_masked(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason) as raised:
        parse(url)
    assert "secret" not in str(raised.value)
