"""HTTP plumbing shared by the Dataverse, Campaign and I/O Events clients.

One `ApiPipeline` per remote service: a `requests.Session` with timeouts, a retry policy that honours
`Retry-After` and knows which calls are safe to repeat, a client-side limiter (requests per second and
concurrent requests: `shared.ratelimit`), one token refresh on 401, and typed errors (`shared.errors`).
"""

from __future__ import annotations

import contextvars
import email.utils
import functools
import logging
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import requests.adapters
import urllib3.exceptions
import urllib3.util

from shared.errors import (
    AuthenticationError,
    ConflictError,
    ConnectionFailedError,
    NotFoundError,
    PreconditionFailedError,
    RequestRejectedError,
    ServiceError,
    ThrottledError,
    TransientError,
)
from shared.ratelimit import RateLimiter
from shared.telemetry import metrics
from shared.telemetry.catalog import API_CALLS

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@functools.cache
def environment_proxies() -> dict[str, str]:
    return {scheme: url for scheme, url in urllib.request.getproxies().items() if scheme in ("http", "https")}


def new_session(*, pool_size: int = 10, max_retries: urllib3.util.Retry | int = 0) -> requests.Session:
    """A Session that reads proxy settings from the environment once, not on every request.

    With `trust_env` on, requests re-scans the whole process environment per request (proxies, netrc,
    REQUESTS_CA_BUNDLE), which costs more CPU than the rest of a call; TLS trust is passed explicitly.
    `max_retries` is urllib3's, for connection-level failures of a caller that has no retry of its own.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(environment_proxies())
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=pool_size, max_retries=max_retries
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class ErrorInfo:
    """What a service-specific parser read from an error response."""

    code: str | None = None
    message: str | None = None
    # None: decide from the status code; False: a data error that no retry can fix.
    retriable: bool | None = None
    # The service says the credential is stale (e.g. IMS 401013): refresh once and resend.
    token_expired: bool = False


class ErrorParser(Protocol):
    def __call__(self, response: requests.Response) -> ErrorInfo: ...


class TokenProvider(Protocol):
    """Gives the Authorization header value; `invalidate` drops a cached token after a 401."""

    def authorization(self) -> str: ...

    def invalidate(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded; the server's Retry-After always wins.

    Non-idempotent calls (POST, PATCH without a condition) are resent only when the server certainly
    did not apply them: 429 and 503 answers, and connections that failed before the request was sent.
    """

    total: int = 6
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 300.0
    retry_on_status: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    # Statuses that prove the request was not processed, so even a POST may be resent.
    not_applied_status: frozenset[int] = frozenset({429, 503})

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_max, self.backoff_factor * (2**attempt)))

    def delay(self, attempt: int, response: requests.Response | None) -> float:
        hinted = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        if hinted is not None:
            return min(hinted, self.retry_after_max)
        return self.backoff(attempt)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_retry_override: contextvars.ContextVar[RetryPolicy | None] = contextvars.ContextVar(
    "retry_override", default=None
)


@contextmanager
def retry_policy(policy: RetryPolicy) -> Iterator[None]:
    """Use `policy` for every call made in this context (e.g. a webhook, which must answer within
    Dataverse's timeout and leaves longer retries to the timer)."""
    token = _retry_override.set(policy)
    try:
        yield
    finally:
        _retry_override.reset(token)


def _default_error_parser(response: requests.Response) -> ErrorInfo:
    return ErrorInfo(message=response.text[:500] or response.reason)


def _sent_nothing(exc: requests.RequestException) -> bool:
    """True when the connection failed before any byte of the request could reach the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause: Any = exc
    while cause is not None:
        if isinstance(cause, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return True
        cause = getattr(cause, "reason", None) or cause.__cause__ or cause.__context__
        if cause is exc:
            break
    return False


@dataclass
class ApiPipeline:
    """Sends requests to one service with its timeouts, retries, limiter, auth and error mapping."""

    service: str
    base_url: str
    token_provider: TokenProvider | None = None
    default_headers: Mapping[str, str] = field(default_factory=dict)
    timeout: tuple[float, float] = (5.0, 60.0)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    error_parser: ErrorParser = _default_error_parser
    session: requests.Session = field(default_factory=new_session)
    # Passed per request: a Session's own `verify` loses to REQUESTS_CA_BUNDLE from the environment.
    verify: str | bool | None = None
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/") + "/"
        self.stats = {"requests": 0, "retries": 0, "throttled": 0}
        self._stats_lock = threading.Lock()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + path_or_url.lstrip("/")

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        idempotent: bool | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        ok_statuses: Iterable[int] = (),
        accept: Callable[[requests.Response], bool] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send one logical request, retrying per policy; raise a typed `ServiceError` on failure.

        `idempotent` defaults from the method (GET/PUT/DELETE yes; POST/PATCH no). Statuses in
        `ok_statuses` are returned instead of raised (e.g. 404 when the caller tests for existence), and
        so is any error response `accept` approves (e.g. a $batch answer: a failing part makes its status
        an error, yet its multipart body holds every part's result).
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        url = self.url(path_or_url)
        retry = _retry_override.get() or self.retry
        ok = set(ok_statuses)
        refreshed = False
        attempt = 0
        while True:
            merged = {**self.default_headers, **(headers or {})}
            if self.token_provider is not None:
                merged["Authorization"] = self.token_provider.authorization()
            try:
                with self.limiter.slot():
                    self._count("requests")
                    response = self.session.request(
                        method,
                        url,
                        headers=merged,
                        params=params,
                        json=json,
                        data=data,
                        timeout=timeout or self.timeout,
                        **({} if self.verify is None else {"verify": self.verify}),
                    )
            except requests.RequestException as exc:
                metrics.count(API_CALLS, service=self.service, status="error")
                may_have_applied = not _sent_nothing(exc)
                if attempt < retry.total and (idempotent or not may_have_applied):
                    attempt += 1
                    self._count("retries")
                    delay = retry.backoff(attempt)
                    log.debug(
                        "%s %s %s failed (%s); retry %d in %.2fs",
                        self.service,
                        method,
                        url.split("?")[0],
                        type(exc).__name__,
                        attempt,
                        delay,
                    )
                    self.sleep(delay)
                    continue
                raise ConnectionFailedError(
                    f"{method} {url.split('?')[0]} failed: {type(exc).__name__}: {exc}",
                    may_have_applied=may_have_applied,
                    service=self.service,
                ) from exc

            status = response.status_code
            metrics.count(API_CALLS, service=self.service, status=status)
            if status < 400 or status in ok or (accept is not None and accept(response)):
                return response
            info = self.error_parser(response)
            if status == 429:
                self._count("throttled")
            if status == 401 and self.token_provider is not None and not refreshed:
                # One refresh per logical request: an expired or revoked token, not bad credentials.
                refreshed = True
                self.token_provider.invalidate()
                continue
            if info.token_expired and self.token_provider is not None and not refreshed:
                refreshed = True
                self.token_provider.invalidate()
                continue
            retriable = status in retry.retry_on_status and info.retriable is not False
            safe_to_resend = idempotent or status in retry.not_applied_status
            if retriable and safe_to_resend and attempt < retry.total:
                attempt += 1
                self._count("retries")
                delay = retry.delay(attempt, response)
                log.debug(
                    "%s %s %s -> %d %s; retry %d in %.2fs",
                    self.service,
                    method,
                    url.split("?")[0],
                    status,
                    info.code or "",
                    attempt,
                    delay,
                )
                self.sleep(delay)
                continue
            raise self._error(method, url, response, info)

    def _error(self, method: str, url: str, response: requests.Response, info: ErrorInfo) -> ServiceError:
        status = response.status_code
        message = f"{method} {url.split('?')[0]}: {info.message or response.reason}"
        kwargs = {"status": status, "code": info.code, "service": self.service, "body": response.text}
        if status == 429:
            return ThrottledError(
                message, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs
            )
        if status in (401, 403):
            return AuthenticationError(message, **kwargs)
        if status == 404:
            return NotFoundError(message, **kwargs)
        if status == 409:
            return ConflictError(message, **kwargs)
        if status == 412:
            return PreconditionFailedError(message, **kwargs)
        if info.retriable is False or status < 500:
            return RequestRejectedError(message, **kwargs)
        return TransientError(message, **kwargs)
