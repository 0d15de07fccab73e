"""Sending one webhook delivery: a POST, and one more attempt only on 502/503/504 (other statuses and
connection errors fail at once), with the error text the plug-in pipeline reports; and the counters
of all deliveries."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus

import requests

from .changes import ChangeEvent

RETRIED_STATUSES = frozenset({502, 503, 504})
_PLUGIN_ERROR = (
    "Unexpected exception from plug-in (Execute): Microsoft.Crm.ServiceBus.WebhookPlugin: "
    "System.Net.Http.HttpRequestException: "
)


@dataclass
class Delivery:
    url: str
    headers: dict[str, str]
    body: bytes
    step_id: str
    step_name: str
    event: ChangeEvent
    duplicate: bool = False
    duplicate_delay: float | None = None  # drawn when scheduled: deliver again this long after success
    attempts: int = 0
    status: int | None = None
    error: str | None = None


@dataclass
class WebhookStats:
    """`pending` counts the async jobs scheduled and not yet finished (retries and duplicates included)."""

    delivered: int = 0
    failed: int = 0
    attempts: int = 0
    duplicates: int = 0
    oversized: int = 0
    pending: int = 0
    # Guards the counters; notified when jobs finish, for `wait_idle`.
    _changed: threading.Condition = field(
        default_factory=threading.Condition, init=False, repr=False, compare=False
    )

    def add(self, **increments: int) -> None:
        with self._changed:
            for name, amount in increments.items():
                setattr(self, name, getattr(self, name) + amount)

    def finish(self, jobs: int = 1) -> None:
        with self._changed:
            self.pending -= jobs
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job is pending; False when `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def as_dict(self) -> dict:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "attempts": self.attempts,
            "duplicates": self.duplicates,
            "oversized": self.oversized,
            "pending": self.pending,
        }


class Sender:
    """POSTs deliveries over one `requests.Session` per thread, counting into `stats`."""

    def __init__(self, stats: WebhookStats) -> None:
        self.stats = stats
        self.retry_delay_seconds = 1.0
        self.timeout_seconds = 60.0
        self.verify: bool | str = True
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # loopback receivers; never a proxy
        return session

    def attempt(self, delivery: Delivery) -> bool:
        """POST once; sets status / error. True when the service would make its one more attempt."""
        delivery.attempts += 1
        self.stats.add(attempts=1)
        try:
            response = self._session().post(
                delivery.url,
                data=delivery.body,
                headers=delivery.headers,
                timeout=self.timeout_seconds,
                verify=self.verify,
            )
        except requests.RequestException as exc:
            delivery.error = f"{_PLUGIN_ERROR}{type(exc).__name__} while sending the request."
            return False
        delivery.status = response.status_code
        response.close()
        if 200 <= response.status_code < 300:
            delivery.error = None
            return False
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = "Unknown"
        status = f"{response.status_code} ({reason})"
        delivery.error = f"{_PLUGIN_ERROR}Response status code does not indicate success: {status}."
        return delivery.attempts == 1 and response.status_code in RETRIED_STATUSES

    def count_outcome(self, delivery: Delivery) -> None:
        self.stats.add(**({"delivered": 1} if delivery.error is None else {"failed": 1}))

    def send(self, delivery: Delivery) -> None:
        """A synchronous step: POST once, and once more only on 502/503/504, inline."""
        if self.attempt(delivery):
            time.sleep(self.retry_delay_seconds)
            self.attempt(delivery)
        self.count_outcome(delivery)
