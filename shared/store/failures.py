"""Failure bookkeeping for every flow, in one place: a record that failed for a transient reason is kept
in the ledger (`FAILED`, with an exponential backoff until `next_attempt_at`) for the timer to retry; one
the target rejects, or that keeps failing past the policy's limit, becomes a dead letter (the payload and
the error, for operators to read and replay) and a `DEAD` ledger row. A record fixed later loses its
dead letter (`clear`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.store.deadletters import DeadLetterStore
from shared.store.ledger import LedgerRecord, RecordLedger, RecordStatus
from shared.telemetry import metrics
from shared.telemetry.catalog import DEAD_LETTERS


class Verdict(StrEnum):
    RETRY_LATER = "failed"  # kept for a retry after the backoff
    DEAD = "dead"  # a dead letter for an operator
    ALREADY_RECORDED = "already_recorded"  # another writer recorded this record meanwhile


@dataclass(frozen=True)
class RetryLimits:
    """How long a failing record is retried: the backoff doubles from `base_delay_seconds` up to
    `max_delay_seconds`; it dies after `max_attempts` attempts or once `max_age` passed since its first
    failure (whichever is set)."""

    base_delay_seconds: float = 60.0
    max_delay_seconds: float | None = None
    max_attempts: int | None = None
    max_age: timedelta | None = None

    def delay(self, attempts: int) -> timedelta:
        seconds = self.base_delay_seconds * 2 ** (attempts - 1)
        if self.max_delay_seconds is not None:
            seconds = min(seconds, self.max_delay_seconds)
        return timedelta(seconds=seconds)

    def exhausted(self, attempts: int, first_failed_at: datetime, now: datetime) -> str | None:
        """Why retrying stops here, or None to retry."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return f"gave up after {attempts} attempts"
        if self.max_age is not None and now - first_failed_at >= self.max_age:
            return f"gave up after {self.max_age.total_seconds() / 3600:g} hours"
        return None


def error_details(exc: BaseException | str | dict[str, Any]) -> dict[str, Any]:
    """What a dead letter says about the error: the service's status, code and answer when it has them."""
    if isinstance(exc, dict):
        return {"type": "Error", "message": "", **exc}
    if isinstance(exc, str):
        return {"type": "Error", "message": exc}
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "code": getattr(exc, "code", None),
        "status": getattr(exc, "status", None),
        "body": getattr(exc, "body", None),
    }


class FailureBook:
    """Records failures of one flow's records in the ledger and the dead-letter store.

    A save that meets a concurrent change is retried on the fresh row only when `still_ours` says the
    failure is still this writer's to record (e.g. it still holds the record's lease); otherwise the
    other writer owns the record's outcome and the verdict is `ALREADY_RECORDED`.
    """

    def __init__(
        self,
        *,
        flow: str,
        ledger: RecordLedger,
        deadletters: DeadLetterStore,
        limits: RetryLimits,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.flow = flow
        self.ledger = ledger
        self.deadletters = deadletters
        self.limits = limits
        self._utcnow = utcnow

    def fail(
        self,
        record: LedgerRecord,
        error: str,
        *,
        payload: Any = None,
        changes: dict[str, Any] | None = None,
        error_fields: dict[str, Any] | None = None,
        still_ours: Callable[[LedgerRecord], bool] | None = None,
    ) -> Verdict:
        """A transient failure of `record` (as last read or written): keep it for a retry after the
        backoff, or make it dead once the limits are reached. `changes` go into the saved row too;
        `error_fields` into the dead letter's error."""
        now = self._utcnow()
        attempts = record.attempts + 1
        first_failed_at = record.first_failed_at or now
        gave_up = self.limits.exhausted(attempts, first_failed_at, now)
        if gave_up is not None:
            return self.dead(
                record.evolve(attempts=attempts),
                {**(error_fields or {}), "message": f"{error}; {gave_up}"},
                payload=payload,
                still_ours=still_ours,
            )
        failed = {
            "status": RecordStatus.FAILED,
            "error": error,
            "attempts": attempts,
            "next_attempt_at": now + self.limits.delay(attempts),
            "first_failed_at": first_failed_at,
            "lease": None,
            **(changes or {}),
        }
        return self._save(record, failed, still_ours, Verdict.RETRY_LATER)

    def dead(
        self,
        record: LedgerRecord,
        error: BaseException | str | dict[str, Any],
        *,
        payload: Any = None,
        correlation_id: str | None = None,
        changes: dict[str, Any] | None = None,
        still_ours: Callable[[LedgerRecord], bool] | None = None,
    ) -> Verdict:
        """Not retriable (rejected data, or retries ran out): a dead letter, visible to operators."""
        details = error_details(error)
        self.deadletters.put(
            flow=self.flow,
            mapping=record.mapping,
            record_id=record.source_id,
            error=details,
            payload=payload,
            correlation_id=correlation_id,
        )
        metrics.count(DEAD_LETTERS, flow=self.flow, mapping=record.mapping)
        dead = {
            "status": RecordStatus.DEAD,
            "error": details["message"][:2000],
            "next_attempt_at": None,
            "lease": None,
            **(changes or {}),
        }
        self._save(record, dead, still_ours, Verdict.DEAD)
        return Verdict.DEAD

    def clear(self, previous: LedgerRecord | None) -> None:
        """A record that was dead and is now in sync (fixed at the source) no longer needs its letter."""
        if previous is not None and previous.status == RecordStatus.DEAD:
            self.deadletters.remove(self.flow, previous.mapping, previous.source_id)

    def _save(
        self,
        record: LedgerRecord,
        changes: dict[str, Any],
        still_ours: Callable[[LedgerRecord], bool] | None,
        verdict: Verdict,
    ) -> Verdict:

        def ours(current: LedgerRecord | None) -> LedgerRecord | None:
            if current is record:
                return record.evolve(**changes)
            mine = current is not None and still_ours is not None and still_ours(current)
            return current.evolve(**changes) if mine else None

        saved = self.ledger.update(record.mapping, record.source_id, ours, read=record)
        return verdict if saved is not None else Verdict.ALREADY_RECORDED
