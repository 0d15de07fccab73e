"""The `webhook_d365` endpoint's logic, free of `azure.functions`: method, shared secret, size, content
type, payload shape, then the ingress flow. Dataverse looks only at the status and retries once, and only
on 502/503/504, so anything transient after a valid payload is parked in the ledger for the timer and
answered 202. Whatever the caller sent answers a 4xx naming the reason, never a 5xx: a 5xx means a
valid change could not be taken (state store or credentials down)."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.d365.webhook import CORRELATION_HEADER, WebhookPayloadError, parse
from shared.http import RetryPolicy, retry_policy
from shared.logs import correlation, log_event
from shared.telemetry import metrics
from shared.telemetry.catalog import WEBHOOK_ANSWERS

log = logging.getLogger(__name__)
JSON_MEDIA_TYPE = "application/json"
# Dataverse waits 60 s for an answer: retry briefly inline, then park the record for the timer.
WEBHOOK_RETRY = RetryPolicy(total=2, backoff_max=2.0, retry_after_max=5.0)


@dataclass(frozen=True)
class WebhookResponse:
    status: int
    body: dict[str, Any] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _media_type(content_type: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` → ``"application/json"``; ``""`` when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


class WebhookEndpoint:
    def __init__(
        self,
        *,
        handle_change: Callable[[Any], str],
        max_body_bytes: int = 1_048_576,
        shared_secret: str | None = None,
        secret_header: str = "x-acsd365-secret",
    ) -> None:
        self._handle_change = handle_change
        self._max_body_bytes = max_body_bytes
        self._secret = shared_secret.encode() if shared_secret else None
        self._secret_header = secret_header

    def __call__(self, method: str, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        correlation_id = _header(headers, CORRELATION_HEADER)
        with correlation(correlation_id):
            try:
                response = self._respond(method, body, headers)
            except Exception:  # a bug here: still answered, and logged with the answer line below
                log.exception("webhook request could not be handled")
                response = WebhookResponse(500, {"error": "internal error"})
            log_event(
                log,
                logging.INFO if response.status < 400 else logging.WARNING,
                "webhook.answer",
                status=response.status,
                outcome=response.body.get("outcome"),
                reason=response.body.get("error"),
                entity=_header(headers, "x-ms-dynamics-entity-name"),
            )
            metrics.count(WEBHOOK_ANSWERS, status=response.status)
            return response

    def _respond(self, method: str, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        if method.upper() != "POST":
            return WebhookResponse(405, {"error": "only POST is accepted"})
        if self._secret is not None:
            sent = (_header(headers, self._secret_header) or "").encode()
            if not hmac.compare_digest(sent, self._secret):
                return WebhookResponse(401, {"error": f"missing or wrong {self._secret_header} header"})
        if len(body) > self._max_body_bytes:
            return WebhookResponse(413, {"error": f"body over {self._max_body_bytes} bytes"})
        content_type = _header(headers, "content-type")
        if _media_type(content_type) != JSON_MEDIA_TYPE:
            sent = f"got {content_type.strip()[:100]!r}" if content_type else "none was sent"
            return WebhookResponse(415, {"error": f"Content-Type must be {JSON_MEDIA_TYPE} ({sent})"})
        try:
            record = parse(body, headers)
        except WebhookPayloadError as exc:
            return WebhookResponse(400, {"error": str(exc)})
        except RecursionError:  # parse() refuses deep nesting first; never let one escape regardless
            return WebhookResponse(400, {"error": "body nests arrays/objects too deeply"})
        except Exception as exc:
            # A parser bug some input triggers: it is still this body that cannot be read, and sending
            # it again would not help, so a 400; the traceback is for us.
            log.exception("webhook payload could not be read")
            return WebhookResponse(400, {"error": f"unreadable payload ({type(exc).__name__})"})
        try:
            with retry_policy(WEBHOOK_RETRY):
                outcome = self._handle_change(record)
        except Exception:
            # Nothing recorded (state store or credentials down): 503 makes Dataverse try once more,
            # and the change-tracking sweep catches the change if that fails too.
            log.exception("webhook change could not be applied or parked")
            return WebhookResponse(
                503, {"error": "temporarily unable to process the change", "id": record.id}
            )
        status = 202 if outcome == "failed" else 200
        return WebhookResponse(
            status,
            {
                "outcome": outcome,
                "id": record.id,
                "table": record.table,
                "correlation_id": record.correlation_id,
            },
        )
