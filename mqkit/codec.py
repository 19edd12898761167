"""Payload encoding on publish and decoding on consume.

On publish the payload's type picks the content type. On consume the handler's annotation
decides what the body becomes; anything that does not decode or validate raises DecodeError,
which the consumer turns into a dead-lettered poison message rather than a crash.
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar, cast

import pydantic
import pydantic_core

from mqkit.errors import DecodeError

T = TypeVar("T")

OCTET_STREAM = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


def encode(payload: Any) -> tuple[bytes, str]:
    """Bytes and content type for a payload."""
    if isinstance(payload, bytes):
        return payload, OCTET_STREAM
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload), OCTET_STREAM
    if isinstance(payload, str):
        return payload.encode(), TEXT
    if isinstance(payload, pydantic.BaseModel):
        return payload.model_dump_json().encode(), JSON
    try:
        return pydantic_core.to_json(payload), JSON
    except pydantic_core.PydanticSerializationError as exc:
        raise TypeError(f"cannot encode a {type(payload).__name__} as a message: {exc}") from exc


def is_json(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == JSON or base.endswith("+json")


def is_text(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().startswith("text/")


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(annotation)


def decode(body: bytes, content_type: str, into: Any) -> Any:
    """Turn a body into `into`. `Any`/`object` picks by content type."""
    if into is bytes:
        return body
    if into is str:
        try:
            return body.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"body is not valid UTF-8: {exc}") from exc
    if into is Any or into is object:
        return decode_auto(body, content_type)
    try:
        return _adapter(into).validate_json(body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise DecodeError(
            f"body does not validate as {_name(into)}: {where}: {first.get('msg')}"
            f" ({exc.error_count()} error(s))"
        ) from exc


def decode_auto(body: bytes, content_type: str) -> Any:
    """JSON for JSON content types, str for text, bytes otherwise."""
    if is_json(content_type):
        try:
            return json.loads(body)
        except ValueError as exc:
            raise DecodeError(f"body is not valid JSON: {exc}") from exc
    if is_text(content_type):
        return decode(body, content_type, str)
    return body


def _name(annotation: Any) -> str:
    return cast(str, getattr(annotation, "__name__", None) or repr(annotation))
