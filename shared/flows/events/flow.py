"""Egress: Campaign email events → activities on the Dynamics contact timeline (the `events_push` timer).

Each run first retries the events parked earlier (their contact did not exist yet), then reads the
Adobe I/O Events journal from the saved position, one journal batch at a time:
- keeps the event types switched on (send, open, click, hard bounce) and drops repeats within the batch;
- resolves the contact: the event's External ID is the Dynamics contactid; with only the Campaign
  recipient known, the profile's External ID is read from Campaign (cached for the run);
- checks which contacts exist and parks the other events in the ledger, to be retried with backoff and
  dead-lettered once they are older than `park_max_age_hours`;
- upserts one activity per event by its alternate key (the event id) through `$batch`, plus the optional
  follow-up tasks (deterministic ids, created once);
- saves the journal position only once the batch is written or parked, so a crash replays the batch and
  the upserts make the replay harmless.
A position older than the journal's retention is reported loudly and reading restarts at the oldest
retained event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.acs.client import CampaignClient
from shared.acs.errors import JournalPositionExpired
from shared.acs.events import EmailEventType
from shared.acs.journal import JournalBatch, JournalReader
from shared.d365.client import DataverseClient
from shared.errors import AuthenticationError, ServiceError
from shared.flows.contacts import ContactLookup
from shared.flows.deadline import Deadline
from shared.flows.events.common import FLOW, JOURNAL_STREAM, PARKED, DeliveryItem
from shared.flows.events.delivery import EventDelivery
from shared.flows.events.writer import ActivityWriter, EventsSetupError
from shared.logs import correlation, log_event
from shared.mapping.model import SyncConfig
from shared.store import CheckpointConflict, FailureBook, LedgerRecord, RetryLimits, RunReport, StateStore

log = logging.getLogger(__name__)

_MAX_JOURNAL_RESTARTS = 2


@dataclass(frozen=True)
class EventsOptions:
    batch_size: int = 100  # requests per `$batch`
    workers: int = 4  # `$batch` requests (and look-ups) in flight
    time_budget_seconds: float = 480.0
    park_max_age_hours: float = 72.0
    retry_base_delay_seconds: float = 60.0
    retry_max_delay_seconds: float = 3600.0
    # Overrides the sync config's toggles (app setting EVENT_TYPES) when not None.
    enabled_types: frozenset[str] | None = None
    recipient_cache_size: int = 50_000


class EventsFlow:
    def __init__(
        self,
        *,
        config: SyncConfig,
        dataverse: DataverseClient,
        campaign: CampaignClient,
        journal: JournalReader,
        store: StateStore,
        options: EventsOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.dataverse = dataverse
        self.campaign = campaign
        self.journal = journal
        self.store = store
        self.options = options or EventsOptions()
        self._clock = clock
        self._utcnow = utcnow
        key_field = config.contact_mapping.key.acs if config.contact_mapping else "externalId"
        self.contacts = ContactLookup(
            dataverse=dataverse,
            campaign=campaign,
            key_field=key_field,
            recipient_cache_size=self.options.recipient_cache_size,
        )
        self.writer = ActivityWriter(
            dataverse=dataverse,
            events=config.events,
            enabled_types=self.enabled_types,
            batch_size=self.options.batch_size,
        )
        self.delivery = EventDelivery(
            contacts=self.contacts,
            writer=self.writer,
            ledger=store.ledger,
            failures=FailureBook(
                flow=FLOW,
                ledger=store.ledger,
                deadletters=store.deadletters,
                limits=RetryLimits(
                    base_delay_seconds=self.options.retry_base_delay_seconds,
                    max_delay_seconds=self.options.retry_max_delay_seconds,
                    max_age=timedelta(hours=self.options.park_max_age_hours),
                ),
                utcnow=utcnow,
            ),
        )

    @property
    def enabled_types(self) -> frozenset[str]:
        if self.options.enabled_types is not None:
            return self.options.enabled_types
        return self.config.events.enabled_types

    # -- timer -------------------------------------------------------------------------------------

    def run(self) -> RunReport:
        report = RunReport(FLOW)
        deadline = Deadline(self.options.time_budget_seconds, self._clock)
        self.contacts.clear()
        outcome = "succeeded"
        with correlation(f"run-{report.run_id}"), ThreadPoolExecutor(self.options.workers) as pool:
            try:
                self.writer.prepare()
                finished = self._retry_parked(report, deadline, pool) and self._read_journal(
                    report, deadline, pool
                )
                if not finished:
                    outcome = "stopped_for_time"
            except (AuthenticationError, EventsSetupError) as exc:
                report.error(stage="events", error=str(exc))
                outcome = "failed"
            except (ServiceError, CheckpointConflict) as exc:
                # The journal position stays at the last batch written: the next run goes on from there.
                report.error(stage="events", error=str(exc))
                outcome = "partial"
            except Exception as exc:
                report.error(stage="events", error=f"{type(exc).__name__}: {exc}")
                self._finish(report, "failed")
                raise
        if outcome == "succeeded" and (report.counts["dead"] or report.counts["journal_restarts"]):
            outcome = "partial"
        return self._finish(report, outcome)

    def _finish(self, report: RunReport, outcome: str) -> RunReport:
        report.finish(outcome)
        self.store.reports.save(report)
        log_event(
            log,
            logging.INFO if outcome == "succeeded" else logging.WARNING,
            "events.run",
            run_id=report.run_id,
            outcome=report.outcome,
            **dict(report.counts),
        )
        return report

    def _read_journal(self, report: RunReport, deadline: Deadline, pool: ThreadPoolExecutor) -> bool:
        """Process journal batches from the checkpoint; False when the time budget ran out."""
        checkpoints = self.store.checkpoints
        checkpoint = checkpoints.get(FLOW, JOURNAL_STREAM)
        restarts = 0
        while True:
            try:
                for batch in self.journal.iter_batches(checkpoint.position):
                    self._process_batch(batch, report, pool)
                    report.count("journal_batches")
                    if batch.position:
                        checkpoint = checkpoints.put(checkpoint, batch.position)
                    if deadline.passed():
                        return False
                return True
            except JournalPositionExpired as exc:
                restarts += 1
                if restarts > _MAX_JOURNAL_RESTARTS:
                    raise
                self._restart_journal(exc, report)
                checkpoint = checkpoints.put(
                    checkpoint,
                    None,
                    {"expired_position": exc.position, "expired_at": self._utcnow().isoformat()},
                )

    def _restart_journal(self, exc: JournalPositionExpired, report: RunReport) -> None:
        log_event(
            log,
            logging.ERROR,
            "events.journal_position_expired",
            position=exc.position,
            action="restarting from the oldest retained event; events in between are lost",
            error=str(exc),
        )
        report.count("journal_restarts")
        report.error(stage="journal", position=exc.position, error=str(exc))
        report.notes.append(
            f"journal position {exc.position} had expired (older than the journal's retention): the events "
            "published between it and the oldest retained event were lost; reading restarted from the "
            "oldest retained event"
        )

    def _process_batch(self, batch: JournalBatch, report: RunReport, pool: ThreadPoolExecutor) -> None:
        report.count("events_read", batch.raw_count)
        items: list[DeliveryItem] = []
        seen: set[str] = set()
        for event in batch.events:
            if event.type is EmailEventType.OTHER:
                report.count("skipped_other")
            elif event.type.value not in self.enabled_types:
                report.count("skipped_disabled")
            elif event.event_id in seen:
                report.count("duplicates")
            else:
                seen.add(event.event_id)
                items.append(DeliveryItem(event))
        self.delivery.deliver(items, report, pool)

    # -- parked events -----------------------------------------------------------------------------

    def _retry_parked(self, report: RunReport, deadline: Deadline, pool: ThreadPoolExecutor) -> bool:
        """Retry parked events whose backoff has elapsed, in chunks; False when the time budget ran out."""
        chunk: list[DeliveryItem] = []
        chunk_size = max(self.options.batch_size, 100)
        for record in self.store.ledger.due_for_retry(PARKED, now=self._utcnow()):
            item = self._parked_item(record, report)
            if item is not None:
                chunk.append(item)
            if len(chunk) >= chunk_size:
                report.count("retried", len(chunk))
                self.delivery.deliver(chunk, report, pool)
                chunk = []
                if deadline.passed():
                    return False
        if chunk:
            report.count("retried", len(chunk))
            self.delivery.deliver(chunk, report, pool)
        return not deadline.passed()

    def replay_event(self, raw: dict[str, Any]) -> str:
        """Deliver one stored event again (a dead letter's payload, once its cause is fixed). Answers
        'written', 'parked' (its contact is still missing: the timer retries it, with a fresh parking
        age), 'dead', or 'skipped' when its type is switched off."""
        self.writer.prepare()
        event = self.journal.parser.parse(raw)
        if event.type.value not in self.enabled_types:
            return "skipped"
        earlier = self.store.ledger.get(PARKED, event.event_id)
        item = DeliveryItem(
            event, parked=earlier.evolve(attempts=0, first_failed_at=None) if earlier else None
        )
        with ThreadPoolExecutor(self.options.workers) as pool:
            (outcome,) = self.delivery.deliver([item], RunReport(FLOW), pool)
        return outcome

    def _parked_item(self, record: LedgerRecord, report: RunReport) -> DeliveryItem | None:
        raw = record.extra.get("event")
        event = self.journal.parser.parse(raw, position=record.extra.get("position")) if raw else None
        if event is None or event.type.value not in self.enabled_types:
            # Switched off since it was parked (or unreadable): nothing left to do for it.
            self.store.ledger.delete(PARKED, record.source_id)
            report.count("skipped_disabled")
            return None
        return DeliveryItem(event, parked=record)
