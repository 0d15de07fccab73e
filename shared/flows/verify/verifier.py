"""The verifier: one mapping checked (and repaired), and the `verify_sync` timer over every mapping."""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from shared.acs.client import CampaignClient
from shared.d365.client import DataverseClient
from shared.errors import AuthenticationError, ServiceError
from shared.flows import names
from shared.flows.deadline import Deadline
from shared.flows.ingress import IngressFlow, MappingContext
from shared.flows.mappings import each_mapping
from shared.flows.verify.rules import EXCLUDED, UNMAPPABLE, DriftRules, DynamicsRow, Finding, MappingResult
from shared.flows.verify.running import Progress, Stopped, bounded
from shared.flows.verify.spill import Spill
from shared.logs import correlation, log_event
from shared.mapping.model import TableMapping
from shared.store import RunReport
from shared.telemetry import metrics
from shared.telemetry.catalog import DRIFT, DRIFT_KINDS

log = logging.getLogger(__name__)

FLOW = names.VERIFY_SYNC


@dataclass(frozen=True)
class VerifyOptions:
    dynamics_page_size: int = 5000
    campaign_page_size: int = 1000
    workers: int = 4  # repairs (and sample look-ups) in flight at once
    examples: int = 5  # drifted records shown per mapping
    time_budget_seconds: float = 480.0  # the timer's; the CLI runs without a budget
    temp_dir: str | None = None  # where the spill database goes (default: the system's temp dir)


class Verifier:
    def __init__(
        self,
        ingress: IngressFlow,
        options: VerifyOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ingress = ingress
        self.options = options or VerifyOptions()
        self._clock = clock

    @property
    def dataverse(self) -> DataverseClient:
        return self.ingress.dataverse

    @property
    def campaign(self) -> CampaignClient:
        return self.ingress.campaign

    # -- one mapping -----------------------------------------------------------------------------------

    def verify(
        self,
        mapping: TableMapping,
        *,
        repair: bool = False,
        limit: int | None = None,
        deadline: Deadline | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> MappingResult:
        """Compare one mapping's Dynamics rows with its Campaign records (all of them, or a sample of
        `limit` rows), and with `repair` write what Dynamics holds for every drifted key.

        :raises ServiceError: a side could not be read (AuthenticationError: credentials rejected).
        """
        started = self._clock()
        ctx = self.ingress.context(mapping)
        rules = DriftRules(ctx)
        result = MappingResult(mapping.name, sample=limit is not None)
        talk = Progress(progress)
        with Spill(self.options.temp_dir) as spill, ThreadPoolExecutor(self.options.workers) as pool:
            try:
                if limit is None:
                    self._read_both(ctx, rules, spill, result, deadline, talk)
                    findings: Iterable[Finding] = self._compare(rules, spill, result)
                else:
                    findings = self._sample(ctx, rules, limit, result, deadline, pool)
                for finding in findings:
                    self._count(result, finding, spill)
                result.spill_bytes = spill.size
                if repair and result.drifted:
                    talk.say(f"repairing {result.drifted:,} drifted record(s)")
                    self._repair(ctx, rules, spill, result, deadline, pool)
            except Stopped:
                result.complete = False  # what was counted so far stands; the rest is unknown
        result.seconds = round(self._clock() - started, 3)
        log_event(
            log,
            logging.INFO,
            "verify.mapping",
            mapping=mapping.name,
            sample=result.sample,
            dynamics=result.dynamics,
            campaign=result.campaign,
            missing=result.missing,
            extra=None if result.sample else result.extra,
            mismatched=result.mismatched,
            duplicates=result.duplicates,
            repaired=result.repaired,
            remaining=result.remaining,
            kept=result.kept,
            excluded=result.excluded,
            unkeyed=result.unkeyed,
            unmappable=result.unmappable,
            complete=result.complete,
            seconds=result.seconds,
            spill_bytes=result.spill_bytes,
        )
        return result

    # -- reading both sides ----------------------------------------------------------------------------

    def _read_both(
        self,
        ctx: MappingContext,
        rules: DriftRules,
        spill: Spill,
        result: MappingResult,
        deadline: Deadline | None,
        talk: Progress,
    ) -> None:
        """Stream Dynamics and Campaign into the spill database at the same time (two threads)."""
        cancel = threading.Event()

        def check() -> None:
            if cancel.is_set() or (deadline is not None and deadline.passed()):
                raise Stopped()

        def dynamics_batches() -> Iterator[list[tuple[str, str | None, int, str | None]]]:
            pages = self.dataverse.iter_pages(
                ctx.entity_set,
                select=ctx.engine.select,
                page_size=self.options.dynamics_page_size,
                annotations=True,
            )
            for page in pages:
                check()
                batch = []
                for raw in page.rows:
                    row = rules.dynamics_row(raw)
                    values = None if row.values is None else rules.pack(row.values)
                    # The id is almost always the key itself: stored only when it differs.
                    batch.append(
                        (row.key, None if row.source_id == row.key else row.source_id, row.state, values)
                    )
                result.dynamics += len(batch)
                talk.read("dynamics", len(batch))
                yield batch

        def campaign_batches() -> Iterator[list[tuple[str, str, str]]]:
            pages = self.campaign.iter_pages(
                ctx.mapping.acs_resource, line_count=self.options.campaign_page_size, force_pagination=True
            )
            for page in pages:
                check()
                batch = []
                for record in page:
                    key = rules.campaign_key(record)
                    if key is None:
                        result.unkeyed += 1
                    else:
                        batch.append((key, str(record["PKey"]), rules.pack(rules.campaign_values(record))))
                result.campaign += len(page)
                talk.read("campaign", len(page))
                yield batch

        with ThreadPoolExecutor(2, thread_name_prefix="verify-read") as readers:
            futures = [
                readers.submit(contextvars.copy_context().run, spill.load_dynamics, dynamics_batches()),
                readers.submit(contextvars.copy_context().run, spill.load_campaign, campaign_batches()),
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(future.exception() is not None for future in done):
                cancel.set()  # the other reader stops at its next page
                wait(futures)
                errors = [f.exception() for f in futures if f.exception() is not None]
                raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])
        talk.say(f"read {result.dynamics:,} Dynamics rows and {result.campaign:,} Campaign records")

    def _compare(self, rules: DriftRules, spill: Spill, result: MappingResult) -> Iterator[Finding]:
        for key, source_id, state, values, records in spill.rows_with_records():
            if state == EXCLUDED:
                result.excluded += 1
            elif state == UNMAPPABLE:
                result.unmappable += 1
            elif len(records) == 1 and records[0][1] == values:
                continue  # one record holding exactly the row's values: no need to decode them
            row = DynamicsRow(key, source_id, state, None if values is None else rules.unpack(values))
            yield rules.judge(key, row, [(pkey, rules.unpack(packed)) for pkey, packed in records])
        for key, records in spill.records_without_rows():
            yield rules.judge(key, None, [(pkey, rules.unpack(packed)) for pkey, packed in records])

    # -- a sample --------------------------------------------------------------------------------------

    def _find_all(self, ctx: MappingContext, key: str) -> list[dict[str, Any]]:
        """Every Campaign record with this key (several if duplicated), through the key's filter."""
        k = ctx.mapping.key
        return self.campaign.find_by(ctx.mapping.acs_resource, k.acs_filter, {k.acs: key})

    def _records(self, ctx: MappingContext, rules: DriftRules, key: str) -> list[tuple[str, dict[str, Any]]]:
        return [(str(record["PKey"]), rules.campaign_values(record)) for record in self._find_all(ctx, key)]

    def _sample(
        self,
        ctx: MappingContext,
        rules: DriftRules,
        limit: int,
        result: MappingResult,
        deadline: Deadline | None,
        pool: ThreadPoolExecutor,
    ) -> Iterator[Finding]:
        pages = self.dataverse.iter_pages(
            ctx.entity_set,
            select=ctx.engine.select,
            page_size=max(1, min(limit, self.options.dynamics_page_size)),
            annotations=True,
        )
        raws = itertools.islice((raw for page in pages for raw in page.rows), limit)

        def rows() -> Iterator[DynamicsRow]:
            for raw in raws:
                row = rules.dynamics_row(raw)
                result.dynamics += 1
                if row.state == UNMAPPABLE:
                    result.unmappable += 1
                    continue
                if row.state == EXCLUDED:
                    result.excluded += 1
                    if not rules.delete_filtered_out:
                        continue  # Campaign may keep or lack it: nothing to look up
                yield row

        def look_up(row: DynamicsRow) -> tuple[Finding, int]:
            records = self._records(ctx, rules, row.key)
            return rules.judge(row.key, row, records), len(records)

        for _, future in bounded(pool, look_up, rows(), self._in_flight, deadline):
            finding, found = future.result()
            result.campaign += found
            yield finding

    # -- counting --------------------------------------------------------------------------------------

    def _count(self, result: MappingResult, finding: Finding, spill: Spill) -> None:
        result.kept += finding.kept
        if not finding.drifted:
            return
        result.drifted += 1
        result.remaining += 1  # until repaired
        result.missing += finding.missing
        result.mismatched += finding.mismatched
        result.extra += finding.extra
        result.duplicates += finding.duplicates
        if len(result.examples) < self.options.examples:
            result.examples.append(finding.example())
        spill.add_drift(finding)
        log_event(
            log,
            logging.DEBUG,
            "verify.drift",
            mapping=result.mapping,
            kind=finding.kind,
            key=finding.key,
            id=finding.source_id,
            campaign_keys=",".join(finding.campaign_keys) or None,
            fields=",".join(c.field for c in finding.differences) or None,
            extra=finding.extra or None,
            why=finding.why,
        )

    # -- repairs ---------------------------------------------------------------------------------------

    @property
    def _in_flight(self) -> int:
        return 4 * self.options.workers

    def _repair(
        self,
        ctx: MappingContext,
        rules: DriftRules,
        spill: Spill,
        result: MappingResult,
        deadline: Deadline | None,
        pool: ThreadPoolExecutor,
    ) -> None:
        shown = {example["key"]: example for example in result.examples}

        def repair_one(item: tuple[str, str, list[str]]) -> tuple[str, str | None, Finding | None]:
            """(the repair's outcome, an error, what the key looks like afterwards)."""
            key, source_id, pkeys = item
            try:
                outcome = str(self.ingress.repair(ctx, source_id, campaign_keys=pkeys))
            except AuthenticationError:
                raise
            except ServiceError as exc:
                return "failed", str(exc), None
            try:
                raw = self.dataverse.get(
                    ctx.entity_set, source_id, select=ctx.engine.select, annotations=True
                )
                row = None if raw is None else rules.dynamics_row(raw)
                return outcome, None, rules.judge(key, row, self._records(ctx, rules, key))
            except AuthenticationError:
                raise
            except ServiceError as exc:
                return outcome, f"checking it again failed: {exc}", None

        for (key, source_id, _), future in bounded(
            pool, repair_one, spill.drifted(), self._in_flight, deadline
        ):
            outcome, error, after = future.result()
            in_line = after is not None and not after.drifted
            result.repair_outcomes[outcome] += 1
            if in_line:
                result.repaired += 1
                result.remaining -= 1
            if key in shown:
                shown[key]["repair"] = outcome
                shown[key]["in_sync_after"] = in_line
            log_event(
                log,
                logging.DEBUG if in_line else logging.WARNING,
                "verify.repair",
                mapping=result.mapping,
                key=key,
                id=source_id,
                outcome=outcome,
                in_sync=in_line,
                still=None if after is None or in_line else after.kind,
                error=error,
            )

    # -- the timer -------------------------------------------------------------------------------------

    def run(self) -> RunReport:
        """The `verify_sync` timer: verify and repair every enabled mapping within the time budget, and
        save a run report with the drift counts."""
        report = RunReport(FLOW)
        deadline = Deadline(self.options.time_budget_seconds, self._clock)
        with correlation(f"run-{report.run_id}"):

            def check(mapping: TableMapping) -> str | None:
                result = self.verify(mapping, repair=True, deadline=deadline)
                _record(report, result)
                if not result.complete:
                    report.notes.append(
                        f"{mapping.name}: not finished within the time budget; run "
                        f"`python -m shared.cli verify --mapping {mapping.name} --repair` from an operator "
                        "shell (no time limit)"
                    )
                    return "stopped_for_time"
                return "partial" if result.remaining else None

            outcome = each_mapping(self.ingress.config.tables, report, check)
        report.finish(outcome)
        self.ingress.store.reports.save(report)
        totals = {name: report.counts[name] for name in ("drift", "repaired", "remaining")}
        log_event(log, logging.INFO, "verify.run", run_id=report.run_id, outcome=report.outcome, **totals)
        return report


def _record(report: RunReport, result: MappingResult) -> None:
    """A mapping's figures in the run report: totals (`drift`: drifted keys found, `repaired`,
    `remaining`, and per kind) plus `<mapping>.<figure>` counts, and a note in words."""
    figures = {
        "dynamics": result.dynamics,
        "campaign": result.campaign,
        "missing": result.missing,
        "extra": result.extra,
        "mismatched": result.mismatched,
        "duplicates": result.duplicates,
        "drift": result.drifted,
        "repaired": result.repaired,
        "remaining": result.remaining,
    }
    for name, value in figures.items():
        report.count(name, value)
        report.count(f"{result.mapping}.{name}", value)
    for kind, figure in DRIFT_KINDS.items():
        metrics.count(DRIFT, figures[figure], flow=FLOW, mapping=result.mapping, kind=kind)
    report.notes.append(f"{result.mapping}: {result.summary()}")
