"""`mqkit run --log-format json`: one JSON object per log line, carrying what a log search
joins on: the message being handled (id, topic, group, attempt) and the trace it is in
(OpenTelemetry's trace and span ids), so a line found in the logs leads to its trace and
back. The worker marks the message for everything logged while it is handled (`handling`),
by mqkit or by the handler."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime

from mqkit.message import Message

_handling: ContextVar[tuple[Message, str] | None] = ContextVar("mqkit_handling", default=None)


@contextmanager
def handling(message: Message, group: str) -> Iterator[None]:
    """Log records made within are about `message`, handled by `group`."""
    token = _handling.set((message, group))
    try:
        yield
    finally:
        _handling.reset(token)


def start_handling(message: Message, group: str) -> Token[tuple[Message, str] | None]:
    """`handling` without a context manager, for the worker's hot path, where a generator
    per message costs more than the rest of the bookkeeping: end it with end_handling."""
    return _handling.set((message, group))


def end_handling(token: Token[tuple[Message, str] | None]) -> None:
    _handling.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = _handling.get()
        if current is not None:
            message, group = current
            line.update(
                message_id=message.id, topic=message.topic, group=group, attempt=message.attempt
            )
        line.update(_trace())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _trace() -> dict[str, str]:
    """The current span's ids, as OpenTelemetry writes them (hex); none while the
    application has not imported OpenTelemetry's trace API or no span is recording."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return {}
    context = api.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
