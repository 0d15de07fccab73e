"""Adobe IMS OAuth server-to-server tokens (client credentials), cached and shared across threads.

Adobe throttles integrations that mint too many tokens, so one token serves every caller until shortly
before it expires (`expires_in` is in seconds in this flow), and only one thread mints at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import requests

from shared.acs.errors import parse_ims_error
from shared.errors import AuthenticationError, RequestRejectedError
from shared.http import ApiPipeline, RetryPolicy, new_session

DEFAULT_TOKEN_URL = "https://ims-na1.adobelogin.com/ims/token/v3"


def _reveal(secret: Any) -> str:
    """Accept a plain str or a pydantic `SecretStr` (anything with `get_secret_value`)."""
    getter = getattr(secret, "get_secret_value", None)
    return getter() if callable(getter) else str(secret)


def _scope_text(scopes: Sequence[str] | str) -> str:
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    return ",".join(s.strip() for s in items if s.strip())


class ImsTokenProvider:
    """Implements `shared.http.TokenProvider` for Adobe APIs (Campaign, I/O Events).

    :param token_url: IMS token endpoint, e.g. https://ims-na1.adobelogin.com/ims/token/v3
    :param scopes: from the credential page, as a list or a comma-separated string.
    :param refresh_margin_seconds: mint a new token this long before the current one expires
        (capped at half the token's lifetime, so short-lived tokens are still reused).
    """

    def __init__(
        self,
        *,
        token_url: str = DEFAULT_TOKEN_URL,
        client_id: str,
        client_secret: Any,
        scopes: Sequence[str] | str,
        timeout: tuple[float, float] = (5, 30),
        session: requests.Session | None = None,
        refresh_margin_seconds: float = 300,
        retry: RetryPolicy | None = None,
        verify: str | bool | None = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = _scope_text(scopes)
        self.refresh_margin_seconds = refresh_margin_seconds
        self._pipeline = ApiPipeline(
            service="ims",
            base_url=token_url,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            error_parser=parse_ims_error,
            session=session or new_session(),
            verify=verify,
        )
        self._token_url = token_url
        self._lock = threading.Lock()
        # (token, monotonic deadline); replaced as a whole so readers never see half an update.
        self._cached: tuple[str, float] | None = None
        # The token each thread last sent, so `invalidate` after a 401 drops only that token and
        # not a fresh one another thread minted meanwhile.
        self._handed_out = threading.local()
        self.tokens_minted = 0

    def __repr__(self) -> str:
        return f"ImsTokenProvider(client_id={self.client_id!r}, scope={self.scope!r})"

    def authorization(self) -> str:
        token = self._valid_token()
        if token is None:
            with self._lock:
                token = self._valid_token() or self._mint()
        self._handed_out.token = token
        return f"Bearer {token}"

    def invalidate(self) -> None:
        rejected = getattr(self._handed_out, "token", None)
        with self._lock:
            if self._cached is not None and self._cached[0] == rejected:
                self._cached = None

    def _valid_token(self) -> str | None:
        cached = self._cached
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        return None

    def _mint(self) -> str:
        secret = _reveal(self._client_secret)
        try:
            response = self._pipeline.request(
                "POST",
                self._token_url,
                # Minting a token changes nothing server-side: safe to resend after any failure.
                idempotent=True,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": secret,
                    "scope": self.scope,
                },
                headers={"Accept": "application/json"},
            )
        except RequestRejectedError as exc:
            # IMS answers bad credentials or scopes with 400 (invalid_client, invalid_scope, ...).
            raise AuthenticationError(
                exc.message, status=exc.status, code=exc.code, service="ims", body=exc.body
            ) from None
        body = response.json()
        token = body["access_token"]
        expires_in = float(body.get("expires_in", 86399))
        margin = min(self.refresh_margin_seconds, expires_in / 2)
        self._cached = (token, time.monotonic() + expires_in - margin)
        self.tokens_minted += 1
        return token
