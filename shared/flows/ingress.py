"""Ingress: Dynamics tables → Campaign resources (mission use cases 1 and 2).

Two entry points share one record pipeline (`IngressFlow.sync_row` / `IngressFlow.delete_row`):
- `run()` — the `contacts_sync` timer: per table mapping, retry failed records, honour replay requests,
  then read change tracking from the saved checkpoint (full initial load first, deltas after), saving the
  checkpoint after every page and stopping cleanly before the function's time budget.
- `handle_change()` — a parsed Dataverse webhook, applied inline.

The ledger makes both idempotent: a stale version or a repeated operation changes nothing, an unchanged
record costs no Campaign call, and the Campaign key is cached so an update costs one call.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.acs.client import CampaignClient
from shared.d365.changetracking import ChangePage, ChangeTrackingReader, DeltaTokenExpired
from shared.d365.client import DataverseClient
from shared.d365.webhook import ChangeRecord
from shared.errors import AuthenticationError, ConflictError, NotFoundError, ServiceError
from shared.flows.deadline import Deadline
from shared.flows.optout import AGREED, OptOutReconciler
from shared.logs import correlation, log_event
from shared.mapping.engine import (
    ColumnInfo,
    MappedRecord,
    MappingEngine,
    MappingError,
    SourceRow,
    source_row_from_webapi,
    source_row_from_webhook,
)
from shared.mapping.model import SyncConfig, TableMapping
from shared.store import Checkpoint, LedgerConflict, LedgerRecord, RecordStatus, RunReport, StateStore

log = logging.getLogger(__name__)

FLOW = "contacts_sync"
REPLAY_FLOW = "replay"  # checkpoint rows (REPLAY_FLOW, mapping) are replay requests
_LEDGER_RACE_ATTEMPTS = 3
_PAGES_IN_FLIGHT = 2  # a full read puts a page's records on the pool while the previous page finishes


@dataclass(frozen=True)
class IngressOptions:
    page_size: int = 5000
    time_budget_seconds: float = 480.0
    retry_max_attempts: int = 8
    retry_base_delay_seconds: float = 60.0
    replay_max_rows: int = 2_000_000
    workers: int = 4


@dataclass
class MappingContext:
    mapping: TableMapping
    engine: MappingEngine
    entity_set: str
    id_column: str


class ReplayRefused(ValueError):
    pass


class PageReadAhead:
    """Change-tracking pages, the next one read from Dataverse in the background once `read_next` is
    called, so that Campaign writes do not wait for Dataverse at a page boundary. The caller calls it once
    the page before the current one is settled: two pages in memory at most."""

    def __init__(self, pages: Iterator[ChangePage], reader: ThreadPoolExecutor) -> None:
        self._pages = pages
        self._reader = reader
        self._context = contextvars.copy_context()  # the run's correlation id, for the reads' log lines
        self._upcoming: Future[ChangePage | None] | None = None

    def read_next(self) -> Future[ChangePage | None]:
        if self._upcoming is None:
            self._upcoming = self._reader.submit(self._context.run, next, self._pages, None)
        return self._upcoming

    def __iter__(self) -> Iterator[ChangePage]:
        while (page := self.read_next().result()) is not None:
            self._upcoming = None
            yield page


class PagesInOrder:
    """The pages of one change-tracking read, settled in page order (`settle_page` answers the checkpoint
    saved after a page): a page held in flight is settled before the next one is."""

    def __init__(self, settle_page: Callable[[PageInFlight, Checkpoint], Checkpoint], checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self._settle_page = settle_page
        self._held: PageInFlight | None = None

    def settle_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self.checkpoint = self._settle_page(held, self.checkpoint)

    def hold(self, page: PageInFlight) -> None:
        self.settle_held()
        self._held = page

    def settle(self, page: PageInFlight) -> None:
        self.settle_held()
        self.checkpoint = self._settle_page(page, self.checkpoint)


class PageLedgerWrites:
    """The ledger rows of a full-load page that began with an empty ledger, created together when the
    page's records are done (a Table transaction per 100 rows instead of a request per row), before its
    checkpoint. A crash before that loses nothing: the page is redone without hints, so its records are
    looked up in Campaign by key, never created twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[LedgerRecord, SourceRow, str]] = []

    def add(self, record: LedgerRecord, row: SourceRow, outcome: str) -> None:
        with self._lock:
            self._pending.append((record, row, outcome))

    def take(self) -> list[tuple[LedgerRecord, SourceRow, str]]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending


@dataclass(frozen=True)
class LoadHints:
    """What a full load knows in advance, to save a round trip per record: the Campaign resource and the
    ledger were empty when the load began. Never set for the first page after a resume (it may be half
    done), and dropped when a record turns out to exist after all (the ledger refuses the duplicate).
    With an empty ledger, the rows are collected in `ledger_writes` and created with the page."""

    campaign_empty: bool = False
    ledger_empty: bool = False
    ledger_writes: PageLedgerWrites | None = None


@dataclass
class PageInFlight:
    """A page whose record tasks are on the pool. Only what finishing the page needs is kept, not its
    rows."""

    checkpoint: str | None
    delta_link: str | None
    hints: LoadHints
    futures: list[Future[str]]


def _already_applied(entry: LedgerRecord | None, version: int | None, operation_id: str | None) -> str | None:
    """'duplicate' for a redelivered operation, 'stale' for a version older than the one applied."""
    if entry is None:
        return None
    if operation_id and entry.operation_id == operation_id:
        return "duplicate"
    if version is not None and entry.source_version is not None and version < entry.source_version:
        return "stale"
    return None


class IngressFlow:
    def __init__(
        self,
        *,
        config: SyncConfig,
        dataverse: DataverseClient,
        campaign: CampaignClient,
        store: StateStore,
        options: IngressOptions | None = None,
        optout: OptOutReconciler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.optout = optout if optout is not None and optout.enabled else None
        self.dataverse = dataverse
        self.campaign = campaign
        self.store = store
        self.options = options or IngressOptions()
        self._clock = clock
        self._contexts: dict[str, MappingContext] = {}

    # -- set-up ------------------------------------------------------------------------------------

    def context(self, mapping: TableMapping) -> MappingContext:
        """Metadata is read once per process and mapping: types, choice labels, the entity set."""
        if mapping.name not in self._contexts:
            metadata = self.dataverse.metadata.table_metadata(mapping.d365_table)
            columns = {
                name: ColumnInfo(a.type, a.options, date_only=getattr(a, "date_only", False))
                for name, a in metadata.attributes.items()
            }
            direction = self.optout.direction if self.optout else "disabled"
            # Every direction seeds a new profile with Dynamics' flags (never Campaign's defaults back
            # into Dynamics); two-way reconciles later Dynamics changes; one-way D→C sends them as fields.
            carries_optout = mapping.d365_table == "contact" and direction != "disabled"
            self._contexts[mapping.name] = MappingContext(
                mapping=mapping,
                engine=MappingEngine(
                    mapping,
                    columns=columns,
                    optout_pairs=self.optout.pairs if carries_optout else (),
                    optout_in_payload=direction == "d365_to_acs",
                ),
                entity_set=mapping.d365_entity_set or metadata.entity_set_name,
                id_column=metadata.primary_id,
            )
        return self._contexts[mapping.name]

    # -- one record ----------------------------------------------------------------------------------

    def sync_row(
        self,
        ctx: MappingContext,
        row: SourceRow,
        *,
        mode: str,
        operation_id: str | None = None,
        hints: LoadHints = LoadHints(),
    ) -> str:
        """Bring Campaign in line with one Dynamics row. `mode`: initial, replay, delta, webhook, retry."""
        for attempt in range(_LEDGER_RACE_ATTEMPTS):
            try:
                return self._sync_row_once(
                    ctx,
                    row,
                    mode=mode,
                    operation_id=operation_id,
                    hints=hints if attempt == 0 else LoadHints(),
                )
            except LedgerConflict:
                continue  # another writer moved this record meanwhile: decide again on fresh state
        return self._failed(ctx, row.id, None, "ledger kept changing under concurrent writers", row=row)

    def _sync_row_once(
        self, ctx: MappingContext, row: SourceRow, *, mode: str, operation_id: str | None, hints: LoadHints
    ) -> str:
        mapping = ctx.mapping
        entry = None if hints.ledger_empty else self.store.ledger.get(mapping.name, row.id)
        skip = _already_applied(entry, row.version, operation_id)
        if skip:
            return self._outcome(ctx, row.id, skip, version=row.version)
        try:
            mapped = ctx.engine.map(row)
        except MappingError as exc:
            return self._dead(ctx, row.id, entry, exc, payload=row.values)

        base = entry or LedgerRecord(mapping.name, row.id)
        base = base.evolve(source_version=row.version, operation_id=operation_id)
        if not mapped.included:
            return self._leave_filter(ctx, base, mapped)

        synced = entry is not None and entry.status == RecordStatus.SYNCED and entry.target_key
        same_content = synced and mode != "replay" and entry.content_hash == mapped.content_hash
        two_way = self.optout is not None and self.optout.direction == "bidirectional"
        optout_moved = two_way and bool(mapped.optout) and base.extra.get(AGREED) != mapped.optout
        if same_content and not optout_moved:
            if entry.source_version != row.version:
                self.store.ledger.save(base)
            return self._outcome(ctx, row.id, "unchanged")
        full = mode in ("initial", "replay") or not synced
        extra = dict(base.extra)
        try:
            if same_content:
                outcome, target_key = "unchanged", entry.target_key
            else:
                outcome, target_key = self._write(
                    ctx, base, mapped, full=full, skip_lookup=hints.campaign_empty
                )
            if outcome == "created" and mapped.optout:
                extra[AGREED] = mapped.optout  # written with the new profile
            elif optout_moved:
                reconciled = self.optout.from_dynamics(row.id, row.values, target_key)
                if reconciled is not None:
                    extra[AGREED] = reconciled.agreed
                    outcome = "updated" if outcome == "unchanged" else outcome
        except AuthenticationError:
            self._failed(ctx, row.id, base, "Campaign rejected our credentials", row=row)
            raise
        except ServiceError as exc:
            if exc.retriable:
                return self._failed(ctx, row.id, base, str(exc), row=row)
            return self._dead(ctx, row.id, base, exc, payload=mapped.payload)
        synced_record = base.evolve(
            status=RecordStatus.SYNCED,
            content_hash=mapped.content_hash,
            target_key=target_key,
            error=None,
            attempts=0,
            next_attempt_at=None,
            first_failed_at=None,
            extra=extra,
        )
        if hints.ledger_writes is not None:
            hints.ledger_writes.add(synced_record, row, outcome)
            return self._outcome(ctx, row.id, outcome)
        try:
            self.store.ledger.save(synced_record)
        except LedgerConflict:
            if outcome == "created":
                self._undo_duplicate_create(ctx, row.id, target_key)
            raise
        self._clear_dead_letter(ctx, entry)
        return self._outcome(ctx, row.id, outcome)

    def _clear_dead_letter(self, ctx: MappingContext, entry: LedgerRecord | None) -> None:
        """A record that was dead and is now in sync (fixed at the source) no longer needs its letter."""
        if entry is not None and entry.status == RecordStatus.DEAD:
            self.store.deadletters.remove(FLOW, ctx.mapping.name, entry.source_id)

    def _undo_duplicate_create(self, ctx: MappingContext, source_id: str, created_key: str) -> None:
        """A concurrent writer (webhook vs timer) recorded this record first: if it points at another
        Campaign record, the one we just created is a duplicate, so remove it before deciding again."""
        winner = self.store.ledger.get(ctx.mapping.name, source_id)
        if winner is not None and winner.target_key and winner.target_key != created_key:
            self.campaign.delete(ctx.mapping.acs_resource, created_key)
            log_event(
                log,
                logging.WARNING,
                "ingress.duplicate_undone",
                mapping=ctx.mapping.name,
                id=source_id,
                pkey=created_key,
            )

    def _write(
        self, ctx: MappingContext, base: LedgerRecord, mapped: MappedRecord, *, full: bool, skip_lookup: bool
    ) -> tuple[str, str]:
        """Write to Campaign; answers the outcome and the Campaign key. A record whose Campaign key is not
        in the ledger is looked up by its business key first, unless the load knows Campaign had none."""
        resource = ctx.mapping.acs_resource
        body = mapped.payload if full else mapped.update_payload
        if base.target_key:
            try:
                self.campaign.patch(resource, base.target_key, body)
                return "updated", base.target_key
            except NotFoundError:
                pass  # deleted in Campaign meanwhile: recreate below
        found = None if skip_lookup else self._find(ctx, mapped.key)
        if found is None:
            try:
                created = self.campaign.create(resource, {**mapped.payload, **mapped.optout})
                return "created", created["PKey"]
            except ConflictError:
                found = self._find(ctx, mapped.key)
                if found is None:
                    raise
        self.campaign.patch(resource, found, mapped.payload)
        return "updated", found

    def _find(self, ctx: MappingContext, key: str) -> str | None:
        k = ctx.mapping.key
        record = self.campaign.find_one_by_key(ctx.mapping.acs_resource, k.acs_filter, k.acs, key)
        return record["PKey"] if record else None

    def _leave_filter(self, ctx: MappingContext, base: LedgerRecord, mapped: MappedRecord) -> str:
        row_filter = ctx.mapping.filter
        was_in_campaign = base.status == RecordStatus.SYNCED and base.target_key
        if was_in_campaign and row_filter is not None and row_filter.delete_filtered_out:
            try:
                self.campaign.delete(ctx.mapping.acs_resource, base.target_key)
            except ServiceError as exc:
                if exc.retriable:
                    return self._failed(ctx, base.source_id, base, str(exc))
                return self._dead(ctx, base.source_id, base, exc)
            self.store.ledger.save(
                base.evolve(status=RecordStatus.EXCLUDED, target_key=None, content_hash=None)
            )
            return self._outcome(ctx, base.source_id, "filtered_out_deleted")
        if base.status != RecordStatus.EXCLUDED or base.etag is None:
            # Left alone in Campaign: keep its key so the record is updated if it re-enters the filter.
            self.store.ledger.save(base.evolve(status=RecordStatus.EXCLUDED, content_hash=None))
        return self._outcome(ctx, base.source_id, "excluded")

    def delete_row(self, ctx: MappingContext, source_id: str, *, operation_id: str | None = None) -> str:
        for _ in range(_LEDGER_RACE_ATTEMPTS):
            try:
                return self._delete_row_once(ctx, source_id.lower(), operation_id=operation_id)
            except LedgerConflict:
                continue
        return self._failed(
            ctx, source_id, None, "ledger kept changing under concurrent writers", deletion=True
        )

    def _delete_row_once(self, ctx: MappingContext, source_id: str, *, operation_id: str | None) -> str:
        entry = self.store.ledger.get(ctx.mapping.name, source_id)
        if entry is not None and entry.status == RecordStatus.DELETED:
            return self._outcome(ctx, source_id, "duplicate")
        base = (entry or LedgerRecord(ctx.mapping.name, source_id)).evolve(operation_id=operation_id)
        if not ctx.mapping.apply_deletes:
            self.store.ledger.save(base.evolve(status=RecordStatus.DELETED))
            return self._outcome(ctx, source_id, "delete_not_applied")
        try:
            target = base.target_key if entry is not None and entry.target_key else self._find(ctx, source_id)
            if target:
                self.campaign.delete(ctx.mapping.acs_resource, target)
        except ServiceError as exc:
            if exc.retriable:
                return self._failed(ctx, source_id, base, str(exc), deletion=True)
            return self._dead(ctx, source_id, base, exc)
        self._clear_dead_letter(ctx, entry)
        self.store.ledger.save(
            base.evolve(
                status=RecordStatus.DELETED,
                target_key=None,
                content_hash=None,
                error=None,
                attempts=0,
                next_attempt_at=None,
                extra={},
            )
        )
        return self._outcome(ctx, source_id, "deleted")

    # -- failure bookkeeping ---------------------------------------------------------------------------

    def _failed(
        self,
        ctx: MappingContext,
        source_id: str,
        base: LedgerRecord | None,
        error: str,
        *,
        row: SourceRow | None = None,
        deletion: bool = False,
    ) -> str:
        """A transient failure: retried by the timer with exponential backoff, dead after N attempts."""
        base = (
            base
            or self.store.ledger.get(ctx.mapping.name, source_id)
            or LedgerRecord(ctx.mapping.name, source_id)
        )
        attempts = base.attempts + 1
        if attempts >= self.options.retry_max_attempts:
            return self._dead(
                ctx,
                source_id,
                base.evolve(attempts=attempts),
                RuntimeError(error),
                payload=row.values if row else None,
            )
        now = datetime.now(UTC)
        delay = self.options.retry_base_delay_seconds * (2 ** (attempts - 1))
        try:
            self.store.ledger.save(
                base.evolve(
                    status=RecordStatus.FAILED,
                    error=error,
                    attempts=attempts,
                    next_attempt_at=now + timedelta(seconds=delay),
                    first_failed_at=base.first_failed_at or now,
                    extra={**base.extra, "pending_delete": True} if deletion else base.extra,
                )
            )
        except LedgerConflict:
            pass  # a concurrent writer recorded a newer state; it owns the outcome
        return self._outcome(ctx, source_id, "failed", error=error, attempts=attempts)

    def _dead(
        self,
        ctx: MappingContext,
        source_id: str,
        base: LedgerRecord | None,
        exc: Exception,
        *,
        payload: Any = None,
    ) -> str:
        """Not retriable (rejected data, or retries ran out): a dead letter, visible to operators."""
        base = base or LedgerRecord(ctx.mapping.name, source_id)
        error = {
            "type": type(exc).__name__,
            "message": str(exc),
            "code": getattr(exc, "code", None),
            "status": getattr(exc, "status", None),
            "body": getattr(exc, "body", None),
        }
        self.store.deadletters.put(
            flow=FLOW,
            mapping=ctx.mapping.name,
            record_id=source_id,
            error=error,
            payload=payload,
            correlation_id=None,
        )
        try:
            self.store.ledger.save(
                base.evolve(status=RecordStatus.DEAD, error=str(exc)[:2000], next_attempt_at=None)
            )
        except LedgerConflict:
            pass
        return self._outcome(ctx, source_id, "dead", error=str(exc))

    def _outcome(self, ctx: MappingContext, source_id: str, outcome: str, **fields: Any) -> str:
        log_event(
            log,
            logging.DEBUG,
            "ingress.record",
            mapping=ctx.mapping.name,
            id=source_id,
            outcome=outcome,
            **fields,
        )
        return outcome

    def _read_row(self, ctx: MappingContext, source_id: str) -> dict[str, Any] | None:
        return self.dataverse.get(ctx.entity_set, source_id, select=ctx.engine.select, annotations=True)

    # -- webhook -------------------------------------------------------------------------------------

    def handle_change(self, record: ChangeRecord) -> str:
        """Apply one webhook change inline; the caller answers Dynamics 2xx whatever the outcome (a
        transient failure is in the ledger for the timer to retry)."""
        mapping = self.config.mapping_for_table(record.table)
        if mapping is None:
            log_event(
                log, logging.INFO, "ingress.webhook_ignored", table=record.table, reason="table not mapped"
            )
            return "ignored"
        ctx = self.context(mapping)
        if record.message.lower() == "delete":
            return self.delete_row(ctx, record.id, operation_id=record.operation_id)
        row = source_row_from_webhook(record, id_column=ctx.id_column)
        # Judge the delivery by its own version before spending a read on it.
        entry = self.store.ledger.get(mapping.name, row.id)
        skip = _already_applied(entry, row.version, record.operation_id)
        if skip:
            return self._outcome(ctx, row.id, skip, version=row.version)
        entry_deleted = entry is not None and entry.status == RecordStatus.DELETED
        missing = set(ctx.engine.source_columns) - set(row.values) - {"versionnumber", "modifiedon"}
        if record.size_exceeded or missing or entry_deleted:
            # No image with the mapped columns (or a late change to a deleted row): read the row itself.
            try:
                fetched = self._read_row(ctx, row.id)
            except ServiceError as exc:
                return self._failed(ctx, row.id, None, f"re-reading the row failed: {exc}")
            if fetched is None:
                return self._outcome(ctx, row.id, "gone")
            row = source_row_from_webapi(fetched, id_column=ctx.id_column)
        return self.sync_row(ctx, row, mode="webhook", operation_id=record.operation_id)

    # -- timer -----------------------------------------------------------------------------------------

    def run(self) -> RunReport:
        report = RunReport(FLOW)
        deadline = Deadline(self.options.time_budget_seconds, self._clock)
        outcome = "succeeded"
        with correlation(f"run-{report.run_id}"), ThreadPoolExecutor(self.options.workers) as pool:
            for mapping in self.config.tables:
                if not mapping.enabled:
                    continue
                try:
                    ctx = self.context(mapping)
                    self._retry_failed(ctx, report, deadline, pool)
                    finished = self._track_changes(ctx, report, deadline, pool)
                except AuthenticationError as exc:
                    report.error(mapping=mapping.name, error=str(exc))
                    outcome = "failed"
                    break
                except ServiceError as exc:
                    report.error(mapping=mapping.name, error=str(exc))
                    outcome = "partial"
                    continue
                if not finished:
                    outcome = "stopped_for_time"
                    break
        report.finish(outcome if report.counts["dead"] == 0 or outcome != "succeeded" else "partial")
        self.store.reports.save(report)
        log_event(
            log,
            logging.INFO,
            "ingress.run",
            run_id=report.run_id,
            outcome=report.outcome,
            **dict(report.counts),
        )
        return report

    @staticmethod
    def _submit(
        pool: ThreadPoolExecutor, tasks: Iterable[Callable[[], str]], deadline: Deadline
    ) -> tuple[list[Future[str]], bool]:
        """Put record tasks on the pool, stopping when the deadline passes; True if all were put."""
        futures = []
        for task in tasks:
            if deadline.passed():
                return futures, False
            futures.append(pool.submit(contextvars.copy_context().run, task))
        return futures, True

    @staticmethod
    def _count(futures: list[Future[str]], report: RunReport) -> None:
        """Wait for record tasks and count their outcomes."""
        for name, n in Counter(f.result() for f in futures).items():
            report.count(name, n)

    def _process(
        self,
        pool: ThreadPoolExecutor,
        tasks: Iterable[Callable[[], str]],
        report: RunReport,
        deadline: Deadline,
    ) -> bool:
        """Run record tasks on the pool; stop submitting when the deadline passes. True if all ran."""
        futures, complete = self._submit(pool, tasks, deadline)
        self._count(futures, report)
        return complete

    def resync(
        self, ctx: MappingContext, source_id: str, *, mode: str = "retry", pending_delete: bool = False
    ) -> str:
        """Re-read one row from Dynamics and apply it (or its deletion if it is gone): failed-record
        retries and dead-letter replays (`mode="replay"` writes every field)."""
        if pending_delete:
            return self.delete_row(ctx, source_id)
        try:
            fetched = self._read_row(ctx, source_id)
        except ServiceError as exc:
            return self._failed(ctx, source_id, None, f"re-reading the row failed: {exc}")
        if fetched is None:
            return self.delete_row(ctx, source_id)
        return self.sync_row(ctx, source_row_from_webapi(fetched, id_column=ctx.id_column), mode=mode)

    def _retry_failed(
        self, ctx: MappingContext, report: RunReport, deadline: Deadline, pool: ThreadPoolExecutor
    ) -> None:
        due = (
            functools.partial(
                self.resync, ctx, entry.source_id, pending_delete=bool(entry.extra.get("pending_delete"))
            )
            for entry in self.store.ledger.due_for_retry(ctx.mapping.name)
        )
        self._process(pool, due, report, deadline)

    def request_replay(self, mapping_name: str) -> None:
        """Ask the next timer run to re-sync a whole mapping (every field, every row)."""
        mapping = self.config.mapping(mapping_name)
        known = sum(self.store.ledger.count_by_status(mapping.name).values())
        if known >= self.options.replay_max_rows:
            raise ReplayRefused(
                f"replay of '{mapping.name}' refused: {known:,} rows ≥ REPLAY_MAX_ROWS "
                f"({self.options.replay_max_rows:,}); raise the setting if you accept a replay of that size"
            )
        checkpoints = self.store.checkpoints
        checkpoints.put(checkpoints.get(REPLAY_FLOW, mapping.name), "requested")

    def _start_state(self, ctx: MappingContext) -> Checkpoint:
        """The checkpoint to continue from; a pending replay request restarts the mapping in replay mode."""
        checkpoints = self.store.checkpoints
        current = checkpoints.get(FLOW, ctx.mapping.name)
        request = checkpoints.get(REPLAY_FLOW, ctx.mapping.name)
        if request.position == "requested" and current.data.get("mode") != "replay":
            checkpoints.put(request, "started")
            log_event(log, logging.WARNING, "ingress.replay_started", mapping=ctx.mapping.name)
            return checkpoints.put(
                current, None, {"mode": "replay", "campaign_empty": False, "ledger_empty": False}
            )
        return current

    def _track_changes(
        self, ctx: MappingContext, report: RunReport, deadline: Deadline, pool: ThreadPoolExecutor
    ) -> bool:
        """Process change-tracking pages from the checkpoint; False when the time budget ran out.

        In a full read (initial load, replay) every row comes once, so a page's records go on the pool
        before the previous page's last ones are done: the pool never drains at a page boundary (a
        record waiting out a Retry-After would hold up the whole next page). Pages are settled in order:
        a page's ledger rows and checkpoint are written once all its records are done and the previous
        page is settled. Delta pages are settled one at a time: they are few, and a page's deletes must
        not overtake an earlier page's write of the same row.
        """
        checkpoint = self._start_state(ctx)
        reader = ChangeTrackingReader(
            self.dataverse, ctx.entity_set, select=ctx.engine.select, page_size=self.options.page_size
        )
        with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as page_reader:
            while True:
                if checkpoint.position is None and checkpoint.data.get("mode") != "replay":
                    checkpoint = self.store.checkpoints.put(
                        checkpoint, None, {"mode": "initial", **self._emptiness(ctx)}
                    )
                mode = checkpoint.data.get("mode") or "delta"
                overlap = mode in ("initial", "replay")
                # After a resume, as many pages as can be in flight at once may be half done.
                half_done = (_PAGES_IN_FLIGHT if overlap else 1) if checkpoint.position is not None else 0
                settle = functools.partial(self._settle_page, ctx, mode, report)
                pages_in_order = PagesInOrder(settle, checkpoint)
                try:
                    pages = PageReadAhead(reader.iter_pages(checkpoint.position), page_reader)
                    for page in pages:
                        hints = self._hints(checkpoint, mode, resumed=half_done > 0)
                        half_done -= 1
                        tasks = [self._row_task(ctx, row, mode, hints) for row in page.upserts]
                        tasks += [self._delete_task(ctx, source_id) for source_id in page.deletes]
                        futures, complete = self._submit(pool, tasks, deadline)
                        current = PageInFlight(page.checkpoint, page.delta_link, hints, futures)
                        pages_in_order.settle_held()
                        pages.read_next()
                        if not complete:  # the time budget stopped the submission part-way
                            self._count(futures, report)
                            if hints.ledger_writes is not None:
                                self._create_page_ledger(ctx, hints.ledger_writes, mode)
                            return False  # the page is redone next run; its done records are no-ops
                        if overlap and not current.delta_link:
                            pages_in_order.hold(current)
                        else:
                            pages_in_order.settle(current)
                        if deadline.remaining() <= 0:
                            return False
                    return True
                except DeltaTokenExpired as exc:
                    log_event(
                        log,
                        logging.WARNING,
                        "ingress.delta_token_expired",
                        mapping=ctx.mapping.name,
                        action="full resync",
                        error=str(exc),
                    )
                    report.notes.append(f"{ctx.mapping.name}: delta token expired; full resync started")
                    report.count("resyncs")
                    pages_in_order.settle_held()
                    pages_in_order.checkpoint = self.store.checkpoints.put(
                        pages_in_order.checkpoint, None, {"mode": None}
                    )
                finally:
                    pages_in_order.settle_held()  # a held page whose records are done is not redone
                checkpoint = pages_in_order.checkpoint

    @staticmethod
    def _hints(checkpoint: Checkpoint, mode: str, *, resumed: bool) -> LoadHints:
        """A resumed page may be half done, and only a full load starts from empty: no shortcuts else."""
        if resumed or mode != "initial":
            return LoadHints()
        ledger_empty = bool(checkpoint.data.get("ledger_empty"))
        return LoadHints(
            campaign_empty=bool(checkpoint.data.get("campaign_empty")),
            ledger_empty=ledger_empty,
            ledger_writes=PageLedgerWrites() if ledger_empty else None,
        )

    def _settle_page(
        self,
        ctx: MappingContext,
        mode: str,
        report: RunReport,
        page: PageInFlight,
        checkpoint: Checkpoint,
    ) -> Checkpoint:
        """Once a page's records are all done: create the ledger rows it collected, then save the position
        after it (and the mode after the last page)."""
        self._count(page.futures, report)
        report.count("pages")
        if page.hints.ledger_writes is not None:
            self._create_page_ledger(ctx, page.hints.ledger_writes, mode)
        data: dict[str, Any] = {}
        if page.delta_link:
            data = {"mode": "delta", "campaign_empty": False, "ledger_empty": False}
            if mode in ("initial", "replay"):
                data["initial_load_completed_at"] = datetime.now(UTC).isoformat()
                self._finish_replay(ctx)
        return self.store.checkpoints.put(checkpoint, page.checkpoint, data)

    def _create_page_ledger(self, ctx: MappingContext, writes: PageLedgerWrites, mode: str) -> None:
        """Create the ledger rows a page collected; a row another writer (a webhook) created meanwhile is
        decided again, as `sync_row` does after a conflict."""
        pending = {record.source_id: (record, row, outcome) for record, row, outcome in writes.take()}
        records = [record for record, _, _ in pending.values()]
        for existing in self.store.ledger.create_many(records):
            _, row, outcome = pending[existing.source_id]
            if outcome == "created":
                self._undo_duplicate_create(ctx, existing.source_id, existing.target_key)
            self.sync_row(ctx, row, mode=mode)

    def _finish_replay(self, ctx: MappingContext) -> None:
        checkpoints = self.store.checkpoints
        request = checkpoints.get(REPLAY_FLOW, ctx.mapping.name)
        if request.etag is not None:
            checkpoints.reset(REPLAY_FLOW, ctx.mapping.name)

    def _emptiness(self, ctx: MappingContext) -> dict[str, Any]:
        """At the start of a full load: is the Campaign resource empty (no look-ups needed), is the ledger
        empty (no ledger reads needed)? One call each, instead of one per record."""
        first_profiles = next(self.campaign.iter_pages(ctx.mapping.acs_resource, line_count=1), [])
        return {
            "campaign_empty": not first_profiles,
            "ledger_empty": self.store.ledger.is_empty(ctx.mapping.name),
            "initial_load_started_at": datetime.now(UTC).isoformat(),
        }

    def _row_task(
        self, ctx: MappingContext, raw: dict[str, Any], mode: str, hints: LoadHints
    ) -> Callable[[], str]:
        row = source_row_from_webapi(raw, id_column=ctx.id_column)
        return lambda: self.sync_row(ctx, row, mode=mode, hints=hints)

    def _delete_task(self, ctx: MappingContext, source_id: str) -> Callable[[], str]:
        return lambda: self.delete_row(ctx, source_id)
