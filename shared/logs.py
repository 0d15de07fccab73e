"""Structured logging: `key=value` messages whose fields are also the record's own attributes, so that
OpenTelemetry's logging handler exports each as a customDimension under its plain name (Application
Insights' `customDimensions.event`, `.mapping`, ...; see `shared.telemetry`), and a correlation id
carried in a context variable, so every line a webhook causes, down to the Campaign write, carries the
id Dataverse sent.

A field named like an attribute `logging.LogRecord` has of its own (`name`, `module`, `message`, ...)
cannot be an extra attribute: it is exported as `<name>_` instead; the message text keeps its name."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# What `logging.LogRecord` sets itself (plus what formatters add): an `extra` key among these raises.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)


def current_correlation_id() -> str | None:
    return _correlation_id.get()


@contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _correlation_id.reset(token)


def _text(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or "=" in text or not text) else text


def kv(**fields: Any) -> str:
    return " ".join(f"{key}={_text(value)}" for key, value in fields.items() if value is not None)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """One structured line: `<event> k=v ...`, with the correlation id when there is one."""
    if not logger.isEnabledFor(level):
        return
    fields.setdefault("correlation_id", current_correlation_id())
    logger.log(level, "%s %s", event, kv(**fields), extra=dimensions(event, fields))


def dimensions(event: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The record attributes of one line: plain values as they are, anything else as text, None left out."""
    attributes: dict[str, Any] = {"event": event}
    for key, value in fields.items():
        if value is None:
            continue
        name = f"{key}_" if key in _RECORD_ATTRIBUTES else key
        attributes[name] = value if isinstance(value, bool | int | float | str) else str(value)
    return attributes
