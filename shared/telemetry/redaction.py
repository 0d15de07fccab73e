"""Keeps credentials out of telemetry: the outgoing calls' URLs on spans, and log lines.

What counts as a secret in a URL: the values of query parameters that carry a credential (`code` is the
Functions key, `sig` a SAS signature, `client_secret`, `access_token`, `token`, `key`, ...), and user
info (`user:password@`). Dataverse's `$deltatoken` and the I/O Events journal position are not
credentials (they read nothing without a bearer token) and stay visible, since an operator uses them to
see where a stream stood. Bearer tokens and `Authorization` headers are never recorded: the requests
instrumentation records no header unless told to, and any header attribute that looks like a credential
is dropped here all the same.

Spans are redacted when they start (the instrumentations of requests, urllib3 and the Azure SDK set the
URL attributes then, and a span is read-only once it ends); log records as they are emitted.
"""

from __future__ import annotations

import re
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import Span, SpanProcessor

REDACTED = "REDACTED"
SECRET_PARAMETERS = (
    "code",
    "sig",
    "signature",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "password",
    "key",
    "apikey",
    "api_key",
    "x-functions-key",
)
_PARAMETER = re.compile(
    r"(?i)(?P<name>(?<![\w$-])(?:" + "|".join(re.escape(p) for p in SECRET_PARAMETERS) + r")=)[^&#\s'\"]+"
)
_USERINFO = re.compile(r"(?i)(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/@\s'\"]+@")
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer\s+)[A-Za-z0-9._~+/=-]+")
# Header attributes (`http.request.header.<name>`) that carry a credential: never exported.
_CREDENTIAL_HEADER = re.compile(
    r"(?i)^http\.(?:request|response)\.header\.(?:authorization|cookie|set_cookie|.*key.*|.*secret.*|.*token.*)$"
)
_URL_ATTRIBUTES = ("url.full", "http.url", "http.target", "url.query", "url.path")


def redact(text: str) -> str:
    """`text` with secret query values, URL user info and bearer tokens replaced by REDACTED."""
    text = _PARAMETER.sub(rf"\g<name>{REDACTED}", text)
    text = _USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    return _BEARER.sub(rf"\g<scheme>{REDACTED}", text)


def _redacted_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple | list) and any(isinstance(v, str) for v in value):
        return tuple(redact(v) if isinstance(v, str) else v for v in value)
    return value


class RedactingSpanProcessor(SpanProcessor):
    """Rewrites a starting span's URL attributes and drops credential headers, before any exporter sees it."""

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        attributes = span.attributes or {}
        for key, value in list(attributes.items()):
            if _CREDENTIAL_HEADER.match(key):
                span.set_attribute(key, REDACTED)
            elif key in _URL_ATTRIBUTES and isinstance(value, str):
                cleaned = redact(value)
                if cleaned != value:
                    span.set_attribute(key, cleaned)
        if span.name and redact(span.name) != span.name:
            span.update_name(redact(span.name))


class RedactingLogRecordProcessor(LogRecordProcessor):
    """Redacts a log record's message and string attributes (an exception's text may quote a URL)."""

    def on_emit(self, log_record: Any) -> None:
        record = getattr(log_record, "log_record", log_record)
        if isinstance(record.body, str):
            record.body = redact(record.body)
        for key, value in list((record.attributes or {}).items()):
            cleaned = _redacted_value(value)
            if cleaned != value:
                record.attributes[key] = cleaned

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
