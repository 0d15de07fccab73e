"""Ingress: Dynamics tables → Campaign resources (mission use cases 1 and 2).

Entry points, all writing through one `RecordWriter` (its module states the write protocol that keeps
Campaign equal to Dynamics under concurrent, late and repeated deliveries):
- `run()`: the `contacts_sync` timer: per table mapping, retry failed records (and expired write leases),
  honour replay requests, then read change tracking from the saved checkpoint (`ChangeTrackingRead`:
  full load first, deltas after, a mark-and-sweep of deletes after any full read into a known ledger),
  stopping cleanly before the function's time budget.
- `handle_change()`: a parsed Dataverse webhook, applied inline.
- `resync()`, `repair()`: one record read from Dynamics now (retries, dead-letter replays, `verify`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from shared.acs.client import CampaignClient
from shared.d365.client import DataverseClient
from shared.d365.webhook import ChangeRecord
from shared.errors import ServiceError
from shared.flows import names
from shared.flows.deadline import Deadline
from shared.flows.ingress.common import FLOW, IngressOptions, MappingContext, Mode, Outcome
from shared.flows.ingress.order import already_applied, ordered
from shared.flows.ingress.pages import ChangeTrackingRead, process
from shared.flows.ingress.records import RecordWriter
from shared.flows.mappings import each_mapping
from shared.flows.optout import OptOutReconciler
from shared.logs import correlation, log_event
from shared.mapping.engine import ColumnInfo, MappingEngine, source_row_from_webapi, source_row_from_webhook
from shared.mapping.model import SyncConfig, TableMapping
from shared.store import RecordStatus, RunReport, StateStore
from shared.telemetry.metrics import count_records

log = logging.getLogger(__name__)

# Columns a webhook may lack without a read of the row: ordering falls back to modifiedon, then a read.
_ORDERING_COLUMNS = frozenset({"versionnumber", "modifiedon"})


class ReplayRefused(ValueError):
    pass


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
        self.store = store
        self._clock = clock
        self._contexts: dict[str, MappingContext] = {}
        self._campaign = campaign
        self._options = options or IngressOptions()
        self._build()

    def _build(self) -> None:
        self.writer = RecordWriter(
            dataverse=self.dataverse,
            campaign=self._campaign,
            store=self.store,
            options=self._options,
            optout=self.optout,
        )
        self.reader = ChangeTrackingRead(
            writer=self.writer,
            dataverse=self.dataverse,
            campaign=self._campaign,
            store=self.store,
            options=self._options,
        )

    # The Campaign client and the options can be swapped (tests, the benchmark's worker): the writer and
    # the reader are rebuilt around them.
    @property
    def campaign(self) -> CampaignClient:
        return self._campaign

    @campaign.setter
    def campaign(self, client: CampaignClient) -> None:
        self._campaign = client
        self._build()

    @property
    def options(self) -> IngressOptions:
        return self._options

    @options.setter
    def options(self, options: IngressOptions) -> None:
        self._options = options
        self._build()

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

    def resync(self, ctx: MappingContext, source_id: str, *, mode: Mode = Mode.RETRY) -> Outcome:
        """Re-read one row from Dynamics and apply it (or its deletion if it is gone): failed-record
        retries and dead-letter replays (`Mode.REPLAY` writes every field)."""
        return self.writer.resync(ctx, source_id, mode=mode)

    def repair(self, ctx: MappingContext, source_id: str, *, campaign_keys: Iterable[str] = ()) -> Outcome:
        """Make Campaign hold what Dynamics holds for one record, whatever the ledger claims."""
        return self.writer.repair(ctx, source_id, campaign_keys=campaign_keys)

    def handle_change(self, record: ChangeRecord) -> Outcome:
        """Apply one webhook change inline; the caller answers Dynamics 2xx whatever the outcome (a
        transient failure is in the ledger for the timer to retry)."""
        mapping = self.config.mapping_for_table(record.table)
        outcome = self._apply_change(record, mapping)
        count_records(names.WEBHOOK_D365, mapping.name if mapping else "", [outcome])
        return outcome

    def _apply_change(self, record: ChangeRecord, mapping: TableMapping | None) -> Outcome:
        if mapping is None:
            log_event(
                log, logging.INFO, "ingress.webhook_ignored", table=record.table, reason="table not mapped"
            )
            return Outcome.IGNORED
        ctx = self.context(mapping)
        if record.message.lower() == "delete":
            return self.writer.delete(ctx, record.id, operation_id=record.operation_id)
        row = source_row_from_webhook(record, id_column=ctx.id_column)
        # Judge the delivery by its own version (or modifiedon) before spending a read on it.
        entry = self.store.ledger.get(mapping.name, row.id)
        skip = already_applied(entry, row, record.operation_id)
        if skip:
            log_event(log, logging.DEBUG, "ingress.record", mapping=mapping.name, id=row.id, outcome=skip)
            return skip
        missing = set(ctx.engine.source_columns) - set(row.values) - _ORDERING_COLUMNS
        deleted = entry is not None and entry.status == RecordStatus.DELETED
        if record.size_exceeded or missing or deleted or not ordered(entry, row):
            # No image with the mapped columns, a late change to a deleted row, or no way to tell this
            # change's place among the ones applied: read the row itself (its version included).
            try:
                fetched = self.writer.read_row(ctx, row.id)
            except ServiceError as exc:
                return self.writer.outcomes.leave_for_later(ctx, row.id, f"re-reading the row failed: {exc}")
            if fetched is None:
                log_event(
                    log,
                    logging.DEBUG,
                    "ingress.record",
                    mapping=mapping.name,
                    id=row.id,
                    outcome=Outcome.GONE,
                )
                return Outcome.GONE
            row = source_row_from_webapi(fetched, id_column=ctx.id_column)
        return self.writer.sync(ctx, row, mode=Mode.WEBHOOK, operation_id=record.operation_id)

    # -- timer -----------------------------------------------------------------------------------------

    def run(self) -> RunReport:
        report = RunReport(FLOW)
        deadline = Deadline(self.options.time_budget_seconds, self._clock)
        with correlation(f"run-{report.run_id}"), ThreadPoolExecutor(self.options.workers) as pool:

            def sync(mapping: TableMapping) -> str | None:
                ctx = self.context(mapping)
                self._retry_failed(ctx, report, deadline, pool)
                return None if self.reader.run(ctx, report, deadline, pool) else "stopped_for_time"

            outcome = each_mapping(self.config.tables, report, sync)
        report.finish(outcome if report.counts["dead"] == 0 or outcome != "succeeded" else "partial")
        self.store.reports.save(report)
        log_event(
            log,
            logging.INFO,
            "ingress.run",
            flow=FLOW,
            run_id=report.run_id,
            outcome=report.outcome,
            **dict(report.counts),
        )
        return report

    def _retry_failed(
        self, ctx: MappingContext, report: RunReport, deadline: Deadline, pool: ThreadPoolExecutor
    ) -> None:
        due = (
            functools.partial(self.writer.resync, ctx, entry.source_id)
            for entry in self.store.ledger.due_for_retry(ctx.mapping.name)
        )
        process(pool, due, report, deadline, mapping=ctx.mapping.name)

    def request_replay(self, mapping_name: str) -> None:
        """Ask the next timer run to re-sync a whole mapping (every field, every row)."""
        mapping = self.config.mapping(mapping_name)
        known = sum(self.store.ledger.count_by_status(mapping.name).values())
        if known >= self.options.replay_max_rows:
            raise ReplayRefused(
                f"replay of '{mapping.name}' refused: {known:,} rows ≥ REPLAY_MAX_ROWS "
                f"({self.options.replay_max_rows:,}); raise the setting if you accept a replay of that size"
            )
        self.reader.request_replay(mapping.name)
