"""A broker that cannot be reached: a typed error naming the URL (password masked).

A broker that goes away while in use is the chaos suite's (tests/chaos/test_broker_down.py).
"""

from __future__ import annotations

import pytest

import mqkit

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "url",
    [
        "kafka://127.0.0.1:1",
        "amqp://guest:s3cret@127.0.0.1:1/",
        "redis://:s3cret@127.0.0.1:1/0",
        "redis+pubsub://127.0.0.1:1/0",
    ],
)
async def test_unreachable_broker_names_the_url(url: str) -> None:
    with pytest.raises(mqkit.BrokerUnavailableError) as info:
        await mqkit.connect(url).start()
    text = str(info.value)
    assert ":1" in text and "s3cret" not in text
