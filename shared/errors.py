"""Typed errors shared by every client, in the spirit of azure-core's exception hierarchy.

Callers branch on the class (retriable or not, missing, conflict) and read `code` for the
service's own error code (Dataverse `0x8004...`, Campaign `RST-...`/`XTK-...`, IMS `error_code`).
"""

from __future__ import annotations


class ServiceError(Exception):
    """A call to a remote service failed.

    `retriable` tells the caller whether the same record may succeed later (transient) or must go to
    a dead letter (the service rejected it for a reason that a retry cannot fix).
    """

    retriable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        service: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.service = service
        # The response body, truncated, for dead letters; never contains our secrets.
        self.body = body[:2000] if body else body

    def __str__(self) -> str:
        parts = [p for p in (self.service, str(self.status) if self.status else None, self.code) if p]
        return f"[{' '.join(parts)}] {self.message}" if parts else self.message


class TransientError(ServiceError):
    """Worth retrying later: throttling, 5xx, timeouts, dropped connections."""

    retriable = True


class ThrottledError(TransientError):
    """HTTP 429 after the retry budget ran out; `retry_after` is the server's last hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ConnectionFailedError(TransientError):
    """No usable answer: the connection failed, was dropped, or timed out.

    `may_have_applied` is True when the request may have reached the server (a write sent but its
    answer lost): the caller must reconcile (look the record up) rather than blindly resend it.
    """

    def __init__(self, message: str, *, may_have_applied: bool, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.may_have_applied = may_have_applied


class AuthenticationError(ServiceError):
    """Credentials rejected (401/403 after one token refresh): fix the settings, retrying will not help."""


class NotFoundError(ServiceError):
    """The record or resource does not exist (404)."""


class ConflictError(ServiceError):
    """The record already exists (409, or 412 on a create-only upsert)."""


class PreconditionFailedError(ServiceError):
    """An `If-Match` / `If-None-Match` condition failed (412)."""


class RequestRejectedError(ServiceError):
    """The service refused the request or the record's data (400, 413, Campaign data errors)."""
