"""Structured logging: `key=value` messages (also attached as `custom_dimensions` for Application
Insights) and a correlation id carried in a context variable, so every line a webhook causes, down to
the Campaign write, carries the id Dataverse sent."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
    logger.log(level, "%s %s", event, kv(**fields), extra={"custom_dimensions": {"event": event, **fields}})
