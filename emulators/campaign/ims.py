"""Adobe IMS, OAuth server-to-server: `POST /ims/token/v3` (client credentials) and token checks."""

from __future__ import annotations

import secrets
import threading

from werkzeug.wrappers import Request, Response

from .clock import EmulatedClock
from .responses import json_response


class TokenIssuer:
    """Issues bearer tokens for one client and answers whether a token is still valid."""

    def __init__(
        self, *, client_id: str, client_secret: str, lifetime_seconds: int, clock: EmulatedClock
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self.tokens_issued = 0

    def handle(self, request: Request) -> Response:
        form = request.form
        grant = form.get("grant_type")
        if not grant:
            return _ims_error(400, "invalid_request", "missing grant_type parameter")
        if grant != "client_credentials":
            return _ims_error(400, "unsupported_grant_type", f"unsupported grant_type {grant}")
        if form.get("client_id") != self.client_id:
            return _ims_error(400, "invalid_client", "invalid client_id parameter")
        if not secrets.compare_digest(form.get("client_secret", ""), self._client_secret):
            return _ims_error(401, "invalid_client", "invalid client_secret parameter")
        token = "eyJ" + secrets.token_urlsafe(96)
        now = self._clock.now()
        with self._lock:
            self._expiry = {t: at for t, at in self._expiry.items() if at > now}
            self._expiry[token] = now + self.lifetime_seconds
            self.tokens_issued += 1
        return json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime_seconds}
        )

    def is_valid(self, authorization: str | None) -> bool:
        """`authorization` is the whole header (`Bearer <token>`)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        with self._lock:
            expiry = self._expiry.get(authorization[7:].strip())
        return expiry is not None and self._clock.now() < expiry


def _ims_error(status: int, error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, status)
