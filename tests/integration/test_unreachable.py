"""A broker that cannot be reached: a typed error naming the URL (password masked).

A broker that goes away while in use is the chaos suite's (tests/chaos/test_broker_down.py).
"""

from __future__ import annotations

import pytest

import mqkit
from mqkit.urls import mask

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "url",
    [
        "kafka://user:s3cret@127.0.0.1:1",
        "amqp://guest:s3cret@127.0.0.1:1/?heartbeat=5",
        "redis://:s3cret@127.0.0.1:1/0?password=s3cret",
        "redis+pubsub://127.0.0.1:1/0?password=s3cret",
    ],
)
async def test_unreachable_broker_names_the_url(url: str) -> None:
    with pytest.raises(mqkit.BrokerUnavailableError) as info:
        await mqkit.connect(url).start()
    text = str(info.value)
    assert mask(url) in text and "***" in mask(url), text  # the URL, as the user gave it
    assert "s3cret" not in text


@pytest.mark.parametrize(
    "url",
    [
        "kafka://127.0.0.1:1?sasl_plain_password=s3cret",  # no SASL support: not ignored
        "amqp://guest:s3cret@127.0.0.1:1/?password=s3cret",
    ],
)
def test_an_option_the_backend_does_not_take_is_refused_with_the_url_masked(url: str) -> None:
    with pytest.raises(mqkit.ConfigurationError) as info:
        mqkit.connect(url)
    text = str(info.value)
    assert "unknown option" in text and mask(url) in text and "s3cret" not in text
