"""The `webhook_d365` endpoint's logic, free of `azure.functions`: size, shared secret, payload shape,
then the ingress flow. Dataverse looks only at the status and retries once, and only on 502/503/504, so
anything transient after a valid payload is parked in the ledger for the timer and answered 202."""

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

log = logging.getLogger(__name__)
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
            response = self._respond(method, body, headers)
            log_event(
                log,
                logging.INFO if response.status < 400 else logging.WARNING,
                "webhook.answer",
                status=response.status,
                outcome=response.body.get("outcome"),
                reason=response.body.get("error"),
                entity=_header(headers, "x-ms-dynamics-entity-name"),
            )
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
        try:
            record = parse(body, headers)
        except WebhookPayloadError as exc:
            return WebhookResponse(400, {"error": str(exc)})
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
