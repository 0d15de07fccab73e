"""The outcomes of a `RecordWriter`'s record writes (see `records`), each logged, and the ends that are
not a released lease: the record handed off to the writer holding its lease or left to the timer, a failed
Campaign action recorded (a transient failure in the ledger, for the timer to retry after a backoff; a
rejected write as a dead letter)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.errors import AuthenticationError, ServiceError
from shared.flows.ingress.campaign import Action
from shared.flows.ingress.common import FLOW, IngressOptions, MappingContext, Outcome
from shared.logs import log_event
from shared.mapping.engine import MappingError
from shared.store import (
    FailureBook,
    LedgerConflict,
    LedgerRecord,
    RecordStatus,
    RetryLimits,
    StateStore,
    Verdict,
)


class RecordOutcomes:
    """The outcomes of one writer's records. `log` is the writer's logger: the lines are the writer's."""

    def __init__(
        self,
        *,
        store: StateStore,
        options: IngressOptions,
        utcnow: Callable[[], datetime],
        log: logging.Logger,
    ) -> None:
        self.store = store
        self.log = log
        self._utcnow = utcnow
        self.failures = FailureBook(
            flow=FLOW,
            ledger=store.ledger,
            deadletters=store.deadletters,
            limits=RetryLimits(
                base_delay_seconds=options.retry_base_delay_seconds, max_attempts=options.retry_max_attempts
            ),
            utcnow=utcnow,
        )

    def hand_off(self, ctx: MappingContext, entry: LedgerRecord) -> Outcome:
        """Another writer holds the record: ask it to read the row again before it lets go."""
        if not entry.recheck:
            self.store.ledger.save(entry.evolve(recheck=True))
        return self.report(ctx, entry.source_id, Outcome.HANDED_OFF)

    def leave_for_later(self, ctx: MappingContext, source_id: str, error: str) -> Outcome:
        """This writer cannot settle the record now: its lease holder, else the timer (reading it again
        after a backoff), writes it later."""
        entry = self.store.ledger.get(ctx.mapping.name, source_id)
        if entry is not None and entry.leased(self._utcnow()):
            try:
                return self.hand_off(ctx, entry)
            except LedgerConflict:
                pass  # the holder released meanwhile: record the failure instead
        entry = entry or LedgerRecord(ctx.mapping.name, source_id)
        return self.fail(ctx, entry.evolve(recheck=True), error)

    def give_up(self, ctx: MappingContext, source_id: str) -> Outcome:
        return self.leave_for_later(ctx, source_id, "the record kept changing under concurrent writers")

    def attempt(
        self, ctx: MappingContext, record: LedgerRecord, action: Action, payload: Any
    ) -> tuple[Outcome, dict[str, Any] | None]:
        """Run a Campaign action. A failure is recorded (retried later, or dead) and answers no fields."""
        try:
            return action(record)
        except AuthenticationError:
            self.fail(ctx, record, "Campaign rejected our credentials")
            raise
        except ServiceError as exc:
            if exc.retriable:
                return self.fail(ctx, record, str(exc)), None
            return self.dead(ctx, record, exc, payload=payload), None
        except MappingError as exc:  # a row read again no longer maps
            return self.dead(ctx, record, exc), None

    def fail(self, ctx: MappingContext, record: LedgerRecord, error: str) -> Outcome:
        """A transient failure: the timer retries the record (reading it again) after a backoff."""
        verdict = self.failures.fail(record, error, still_ours=_same_lease(record))
        if verdict == Verdict.DEAD:
            return self.report(ctx, record.source_id, Outcome.DEAD, error=error)
        return self.report(ctx, record.source_id, Outcome.FAILED, error=error, attempts=record.attempts + 1)

    def dead(
        self, ctx: MappingContext, record: LedgerRecord, exc: Exception, *, payload: Any = None
    ) -> Outcome:
        """Not retriable (rejected data): a dead letter, visible to operators."""
        self.failures.dead(record, exc, payload=payload, still_ours=_same_lease(record))
        return self.report(ctx, record.source_id, Outcome.DEAD, error=str(exc))

    def clear(self, previous: LedgerRecord | None) -> None:
        """The record is settled: a dead letter it left before is removed."""
        self.failures.clear(previous)

    def report(self, ctx: MappingContext, source_id: str, outcome: Outcome, **fields: Any) -> Outcome:
        log_event(
            self.log,
            logging.DEBUG,
            "ingress.record",
            mapping=ctx.mapping.name,
            id=source_id,
            outcome=outcome,
            **fields,
        )
        return outcome


def _same_lease(record: LedgerRecord) -> Callable[[LedgerRecord], bool] | None:
    """A failure under a lease is still ours to record while we hold that lease."""
    if record.lease is None:
        return None
    return lambda fresh: fresh.status == RecordStatus.WRITING and fresh.lease == record.lease
