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

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.acs.client import CampaignClient
from shared.acs.errors import JournalPositionExpired
from shared.acs.events import CampaignEmailEvent, EmailEventType
from shared.acs.journal import JournalBatch, JournalReader
from shared.d365.batch import BatchRequest, BatchResult
from shared.d365.client import DataverseClient
from shared.d365.odata import is_guid
from shared.errors import AuthenticationError, NotFoundError, ServiceError
from shared.flows import names
from shared.flows.contacts import ContactLookup
from shared.flows.deadline import Deadline
from shared.flows.timeline import ActivityTarget, activity_request, follow_up_request
from shared.logs import correlation, log_event
from shared.mapping.model import SyncConfig
from shared.setup.activities import EVENT_ID_COLUMN, columns_for
from shared.store import (
    CheckpointConflict,
    FailureBook,
    LedgerRecord,
    RetryLimits,
    RunReport,
    StateStore,
    Verdict,
)
from shared.telemetry.metrics import count_records

log = logging.getLogger(__name__)

FLOW = names.EVENTS_PUSH
JOURNAL_STREAM = "journal"
PARKED = "events"  # ledger mapping (and dead-letter mapping) of events waiting for their contact
SETUP_HINT = "run `python -m shared.cli d365 setup`"
# A ledger row's `extra` lives in one Table property (at most 64 KiB of UTF-16).
_MAX_PARKED_EVENT_CHARS = 30_000
_MAX_JOURNAL_RESTARTS = 2
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

WRITTEN, PARK, DEAD = "written", "park", "dead"


class EventsSetupError(RuntimeError):
    """Dynamics lacks what the flow writes to (an activity table, a column, the event-id key)."""


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


@dataclass
class _Item:
    """One event on its way: the contact it resolved to, its outcome, and its ledger row when retried."""

    event: CampaignEmailEvent
    parked: LedgerRecord | None = None
    contact_id: str | None = None
    outcome: str | None = None
    reason: str | None = None
    error: dict[str, Any] = field(default_factory=dict)

    def settle(self, outcome: str, reason: str, **error: Any) -> None:
        # A dead verdict is final; a park never overrides it.
        if self.outcome == DEAD:
            return
        self.outcome, self.reason, self.error = outcome, reason, error


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
        # Read from metadata once per process: entity sets and `regarding` navigation properties.
        self._activities: dict[str, ActivityTarget] | None = None
        self._task: ActivityTarget | None = None
        key_field = config.contact_mapping.key.acs if config.contact_mapping else "externalId"
        self.contacts = ContactLookup(
            dataverse=dataverse,
            campaign=campaign,
            key_field=key_field,
            recipient_cache_size=self.options.recipient_cache_size,
        )
        self.failures = FailureBook(
            flow=FLOW,
            ledger=store.ledger,
            deadletters=store.deadletters,
            limits=RetryLimits(
                base_delay_seconds=self.options.retry_base_delay_seconds,
                max_delay_seconds=self.options.retry_max_delay_seconds,
                max_age=timedelta(hours=self.options.park_max_age_hours),
            ),
            utcnow=utcnow,
        )

    @property
    def enabled_types(self) -> frozenset[str]:
        if self.options.enabled_types is not None:
            return self.options.enabled_types
        return self.config.events.enabled_types

    @property
    def _follow_ups(self) -> bool:
        events = self.config.events
        return (events.follow_up_task_on_click and "click" in self.enabled_types) or (
            events.fix_address_task_on_bounce and "bounce" in self.enabled_types
        )

    # -- set-up ------------------------------------------------------------------------------------

    def _target(self, table: str, *, event_type: str | None) -> ActivityTarget:
        metadata = self.dataverse.metadata
        try:
            definition = metadata.table_metadata(table)
            regarding = metadata.regarding_navigation_property(table, "contact")
        except NotFoundError as exc:
            raise EventsSetupError(
                f"activity table '{table}' is missing in Dynamics or cannot regard a contact ({exc}); "
                f"{SETUP_HINT}"
            ) from exc
        if event_type is not None:
            wanted = {c.logical_name for c in columns_for(event_type)}
            missing = sorted(wanted - definition.attributes.keys())
            if missing:
                raise EventsSetupError(f"activity table '{table}' lacks the columns {missing}; {SETUP_HINT}")
            keys = [k for k in metadata.alternate_keys(table) if k.key_attributes == (EVENT_ID_COLUMN,)]
            if not keys:
                raise EventsSetupError(
                    f"activity table '{table}' has no alternate key on {EVENT_ID_COLUMN}; {SETUP_HINT}"
                )
            if keys[0].index_status not in (None, "Active"):
                raise EventsSetupError(
                    f"the {EVENT_ID_COLUMN} key of '{table}' is {keys[0].index_status}, not Active yet; "
                    "Dynamics builds it in the background, wait and retry"
                )
        return ActivityTarget(table=table, entity_set=definition.entity_set_name, regarding=regarding)

    def _prepare(self) -> None:
        if self._activities is None:
            tables = self.config.events.activity_tables
            self._activities = {
                kind: self._target(getattr(tables, kind), event_type=kind)
                for kind in sorted(self.enabled_types)
            }
        if self._task is None and self._follow_ups:
            self._task = self._target("task", event_type=None)

    # -- timer -------------------------------------------------------------------------------------

    def run(self) -> RunReport:
        report = RunReport(FLOW)
        deadline = Deadline(self.options.time_budget_seconds, self._clock)
        self.contacts.clear()
        outcome = "succeeded"
        with correlation(f"run-{report.run_id}"), ThreadPoolExecutor(self.options.workers) as pool:
            try:
                self._prepare()
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
        items: list[_Item] = []
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
                items.append(_Item(event))
        self._deliver(items, report, pool)

    # -- parked events -----------------------------------------------------------------------------

    def _retry_parked(self, report: RunReport, deadline: Deadline, pool: ThreadPoolExecutor) -> bool:
        """Retry parked events whose backoff has elapsed, in chunks; False when the time budget ran out."""
        chunk: list[_Item] = []
        chunk_size = max(self.options.batch_size, 100)
        for record in self.store.ledger.due_for_retry(PARKED, now=self._utcnow()):
            item = self._parked_item(record, report)
            if item is not None:
                chunk.append(item)
            if len(chunk) >= chunk_size:
                report.count("retried", len(chunk))
                self._deliver(chunk, report, pool)
                chunk = []
                if deadline.passed():
                    return False
        if chunk:
            report.count("retried", len(chunk))
            self._deliver(chunk, report, pool)
        return not deadline.passed()

    def replay_event(self, raw: dict[str, Any]) -> str:
        """Deliver one stored event again (a dead letter's payload, once its cause is fixed). Answers
        'written', 'parked' (its contact is still missing: the timer retries it, with a fresh parking
        age), 'dead', or 'skipped' when its type is switched off."""
        self._prepare()
        event = self.journal.parser.parse(raw)
        if event.type.value not in self.enabled_types:
            return "skipped"
        earlier = self.store.ledger.get(PARKED, event.event_id)
        item = _Item(event, parked=earlier.evolve(attempts=0, first_failed_at=None) if earlier else None)
        with ThreadPoolExecutor(self.options.workers) as pool:
            (outcome,) = self._deliver([item], RunReport(FLOW), pool)
        return outcome

    def _parked_item(self, record: LedgerRecord, report: RunReport) -> _Item | None:
        raw = record.extra.get("event")
        event = self.journal.parser.parse(raw, position=record.extra.get("position")) if raw else None
        if event is None or event.type.value not in self.enabled_types:
            # Switched off since it was parked (or unreadable): nothing left to do for it.
            self.store.ledger.delete(PARKED, record.source_id)
            report.count("skipped_disabled")
            return None
        return _Item(event, parked=record)

    # -- one batch of events -----------------------------------------------------------------------

    def _deliver(self, items: list[_Item], report: RunReport, pool: ThreadPoolExecutor) -> list[str]:
        """Resolve, check, write, then record every item's outcome (written, parked or dead); answers
        the outcome of each item, in order."""
        if not items:
            return []
        self._resolve_contacts(items, pool)
        pending = [item for item in items if item.outcome is None]
        existing = self.contacts.existing({item.contact_id for item in pending}, pool)
        for item in pending:
            if item.contact_id not in existing:
                item.settle(PARK, f"contact {item.contact_id} does not exist in Dynamics (yet)")
        self._write([item for item in items if item.outcome is None], pool)
        outcomes = list(pool.map(self._record_outcome, items))
        for name, n in count_records(FLOW, "", outcomes).items():
            report.count(name, n)
        for item in items:
            if item.outcome == WRITTEN:
                report.count(f"activities_{item.event.type.value}")
        return outcomes

    def _resolve_contacts(self, items: list[_Item], pool: ThreadPoolExecutor) -> None:
        recipients: set[str] = set()
        for item in items:
            external_id = item.event.external_id
            if external_id:
                if is_guid(external_id):
                    item.contact_id = external_id.lower()
                else:
                    item.settle(DEAD, f"External ID {external_id!r} is not a Dynamics contactid (a GUID)")
            elif item.event.recipient_id:
                recipients.add(item.event.recipient_id)
            else:
                item.settle(DEAD, "the event names neither an External ID nor a Campaign recipient")
        ordered = sorted(recipients)
        resolutions = dict(zip(ordered, pool.map(self.contacts.recipient, ordered), strict=True))
        for item in items:
            resolution = resolutions.get(item.event.recipient_id or "") if not item.contact_id else None
            if resolution is None:
                continue
            if resolution.contact_id:
                item.contact_id = resolution.contact_id
            elif resolution.dead:
                item.settle(DEAD, resolution.dead)
            else:
                item.settle(PARK, resolution.park or "recipient not resolved")

    # -- writing -----------------------------------------------------------------------------------

    def _requests(self, item: _Item) -> list[BatchRequest]:
        """The event's activity upsert, then its follow-up task if the config asks for one."""
        assert self._activities is not None and item.contact_id is not None
        events = self.config.events
        target = self._activities[item.event.type.value]
        requests = [activity_request(item.event, item.contact_id, target, owner_id=events.owner_id)]
        if self._task is not None:
            task = follow_up_request(item.event, item.contact_id, self._task, events)
            if task is not None:
                requests.append(task)
        return requests

    def _write(self, items: list[_Item], pool: ThreadPoolExecutor) -> None:
        """Send the items' requests in `$batch`es (continue-on-error), several at once. A batch that fails
        as a whole raises: the journal position is not saved and the batch is read again next run."""
        requests: list[BatchRequest] = []
        owners: list[_Item] = []
        for item in items:
            for request in self._requests(item):
                requests.append(request)
                owners.append(item)
        size = self.options.batch_size
        futures = [
            pool.submit(self.dataverse.execute_batch, requests[start : start + size], continue_on_error=True)
            for start in range(0, len(requests), size)
        ]
        results = [result for future in futures for result in future.result()]
        for item, result in zip(owners, results, strict=True):
            self._judge(item, result)
        for item in items:
            if item.outcome is None:
                item.outcome = WRITTEN

    @staticmethod
    def _judge(item: _Item, result: BatchResult) -> None:
        if result.ok:
            return
        create_only = (result.request.headers or {}).get("If-None-Match") == "*"
        if result.status == 412 and create_only:
            return  # the follow-up task exists already: created by an earlier delivery
        detail = {"status": result.status, "code": result.error_code, "message": result.error_message}
        if result.status == 404:
            item.settle(PARK, f"contact {item.contact_id} not found when writing: {result.error_message}")
        elif result.status is None or result.status in _TRANSIENT_STATUSES:
            item.settle(PARK, f"Dataverse answered {result.status}: {result.error_message}", **detail)
        else:
            item.settle(
                DEAD, f"Dataverse rejected the write ({result.status}): {result.error_message}", **detail
            )

    # -- outcomes ----------------------------------------------------------------------------------

    def _record_outcome(self, item: _Item) -> str:
        """Make an item's outcome durable; answers the report counter to bump."""
        if item.outcome == WRITTEN:
            if item.parked is not None:
                self.store.ledger.delete(PARKED, item.event.event_id)
            return "written"
        if item.outcome == PARK:
            return self._park(item)
        return self._dead(item)

    def _park(self, item: _Item) -> str:
        base = item.parked or LedgerRecord(PARKED, item.event.event_id)
        if len(json.dumps(item.event.raw, default=str)) > _MAX_PARKED_EVENT_CHARS:
            item.reason = f"{item.reason}; the event is too large to park for a retry"
            return self._dead(item)
        verdict = self.failures.fail(
            base,
            item.reason or "not delivered",
            payload=item.event.raw,
            changes={
                "target_key": item.contact_id,
                "extra": {"event": item.event.raw, "position": item.event.position},
            },
            error_fields={"type": "EventNotDelivered", **item.error},
        )
        if verdict == Verdict.ALREADY_RECORDED:
            return "already_parked"  # a repeat of an event parked earlier: that row is retried
        if verdict == Verdict.DEAD:
            self._log_dead(item)
            return "dead"
        log_event(
            log,
            logging.DEBUG,
            "events.parked",
            event_id=item.event.event_id,
            contact_id=item.contact_id,
            reason=item.reason,
        )
        return "parked"

    def _dead(self, item: _Item) -> str:
        base = item.parked or LedgerRecord(PARKED, item.event.event_id)
        error = {"type": "EventNotDelivered", "message": item.reason, **item.error}
        # Parked by an earlier delivery of the same event? The dead letter says what happened anyway.
        self.failures.dead(base, error, payload=item.event.raw, changes={"extra": {}})
        self._log_dead(item)
        return "dead"

    def _log_dead(self, item: _Item) -> None:
        event = item.event
        log_event(
            log, logging.WARNING, "events.dead", event_id=event.event_id, type=event.type, reason=item.reason
        )
