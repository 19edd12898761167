from __future__ import annotations

import datetime as dt
from typing import Any

import pydantic
import pytest

import mqkit
from mqkit import codec
from mqkit.urls import mask, parse_duration, parse_size, scheme_of


class Item(pydantic.BaseModel):
    name: str
    qty: int


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"x", codec.OCTET_STREAM),
        (bytearray(b"x"), codec.OCTET_STREAM),
        ("x", codec.TEXT),
        ({"a": 1}, codec.JSON),
        ([1], codec.JSON),
        (Item(name="a", qty=1), codec.JSON),
        (dt.date(2026, 1, 2), codec.JSON),
    ],
)
def test_encode_picks_content_type(payload: Any, content_type: str) -> None:
    assert codec.encode(payload)[1] == content_type


def test_unencodable_payload_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot encode"):
        codec.encode(object())


def test_decode_any_follows_content_type() -> None:
    assert codec.decode(b'{"a":1}', "application/json", Any) == {"a": 1}
    assert codec.decode(b'{"a":1}', "application/cloudevents+json", Any) == {"a": 1}
    assert codec.decode(b"hi", "text/plain", Any) == "hi"
    assert codec.decode(b"\x00", "application/octet-stream", Any) == b"\x00"


@pytest.mark.parametrize(
    ("body", "into", "match"),
    [
        (b"\xff", str, "UTF-8"),
        (b"{", dict, "dict"),
        (b'{"name": "a"}', Item, "qty"),
        (b'{"name": "a", "qty": "many"}', Item, "qty"),
        (b"[1, 2]", Item, "Item"),
    ],
)
def test_poison_bodies_raise_decode_error(body: bytes, into: Any, match: str) -> None:
    with pytest.raises(mqkit.DecodeError, match=match):
        codec.decode(body, codec.JSON, into)


def test_message_create_and_decode() -> None:
    m = mqkit.Message.create("t", Item(name="a", qty=2), key="k", headers={"h": "1"})
    assert m.content_type == codec.JSON
    assert m.decode(Item) == Item(name="a", qty=2)
    assert m.attempt == 0 and m.key == "k" and m.headers == {"h": "1"}


def test_mask_hides_passwords() -> None:
    assert mask("amqp://user:s3cret@host:5672/vh") == "amqp://user:***@host:5672/vh"
    assert mask("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert mask("kafka://host:9092") == "kafka://host:9092"
    assert "s3cret" not in mask("amqps://u:s3cret@h/?x=1")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://h/0?password=s3cret", "redis://h/0?password=***"),
        ("amqp://h/?password=s3cret&heartbeat=5", "amqp://h/?password=***&heartbeat=5"),
        ("kafka://h:9092?sasl_plain_password=s3cret", "kafka://h:9092?sasl_plain_password=***"),
        ("postgresql://app@db/app?password=s3cret", "postgresql://app@db/app?password=***"),
        ("https://user:s3cret@x.example/h", "https://user:***@x.example/h"),
        ("https://s3cret@x.example/h", "https://***@x.example/h"),  # a lone user is a token
        ("https://x.example/h?access_token=s3cret&a=1", "https://x.example/h?access_token=***&a=1"),
        ("https://x.example/h?X-Amz-Signature=s3cret", "https://x.example/h?X-Amz-Signature=***"),
        ("https://x.example/h?api_key=s3cret", "https://x.example/h?api_key=***"),
        ("https://x.example/h?client_secret=s3cret", "https://x.example/h?client_secret=***"),
        ("https://x.example/h?token=s3cret", "https://x.example/h?token=***"),
        ("redis://h/0?passwd=s3cret&pass=s3cret", "redis://h/0?passwd=***&pass=***"),
        ("amqp://guest@h/", "amqp://guest@h/"),  # a broker's user name is not a secret
        ("https://x.example/h?page=2&ssl_keyfile=/k", "https://x.example/h?page=2&ssl_keyfile=/k"),
    ],
)
def test_mask_hides_userinfo_and_secret_looking_query_values(url: str, shown: str) -> None:
    assert mask(url) == shown


def test_scheme_requires_url() -> None:
    assert scheme_of("Redis+PubSub://h") == "redis+pubsub"
    with pytest.raises(mqkit.ConfigurationError):
        scheme_of("localhost:9092")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30), ("30s", 30), ("500ms", 0.5), ("5m", 300), ("7d", 604800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_sizes_and_bad_values() -> None:
    assert parse_size("1MiB") == 1024 * 1024
    assert parse_size("512kb") == 512_000
    with pytest.raises(mqkit.ConfigurationError, match="size"):
        parse_size("lots")
    with pytest.raises(mqkit.ConfigurationError, match="duration"):
        parse_duration("soon")


def test_unknown_scheme_names_known_schemes_and_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mqkit import registry

    with pytest.raises(mqkit.UnknownSchemeError, match="nats://") as info:
        mqkit.connect("nats://localhost")
    assert "memory://" in str(info.value) and "sqlite://" in str(info.value)
    # As it reads where the RabbitMQ adapter is not installed:
    installed = {k: v for k, v in registry._installed().items() if not k.startswith("amqp")}
    monkeypatch.setattr(registry, "_installed", lambda: installed)
    with pytest.raises(mqkit.UnknownSchemeError) as info:
        mqkit.connect("amqp://guest:guest@localhost/")
    text = str(info.value)
    assert "mqkit-rabbitmq" in text and "pip install 'mqkit[rabbitmq]'" in text
    assert "guest:guest" not in text


@pytest.mark.parametrize(
    "url",
    [
        "memory://?publish_timout=2s",
        "sqlite:///x.db?retension=1d",
        "sqlite:///x.db?lease=5s&pol=1ms",
    ],
)
def test_an_unknown_url_option_is_an_error_naming_it_and_the_known_ones(url: str) -> None:
    from mqkit import ConfigurationError, connect

    with pytest.raises(ConfigurationError) as info:
        connect(url)
    text = str(info.value)
    unknown = url.rsplit("&", 1)[-1].rsplit("?", 1)[-1].split("=")[0]
    assert f"unknown option {unknown!r}" in text and "did you mean" in text
    assert "publish_timeout" in text and "max_message_bytes" in text


def test_declared_options_are_typed_and_checked() -> None:
    from mqkit import ConfigurationError, connect

    broker = connect("sqlite:///x.db?lease=2s&retention=1h&poll=10ms&synchronous=FULL")
    assert (broker.lease, broker.retention, broker.poll) == (2.0, 3600.0, 0.01)  # type: ignore[attr-defined]
    for bad, says in [
        ("sqlite:///x.db?lease=0s", "lease must be > 0"),
        ("sqlite:///x.db?synchronous=off", "synchronous must be one of"),
        ("memory://?publish_timeout=soon", "publish_timeout"),
        ("memory://?max_message_bytes=lots", "max_message_bytes"),
    ]:
        with pytest.raises(ConfigurationError, match=says):
            connect(bad)
