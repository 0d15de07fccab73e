"""Opt-out sync (mission use case 4): Dynamics boolean columns ⇄ Campaign's opt-out booleans.

- Dynamics → Campaign rides on the ingress flow: one-way as ordinary fields of the contact payload;
  two-way through `OptOutReconciler.from_dynamics` whenever Dynamics' flags differ from the agreed state.
- Campaign → Dynamics is `OptOutFlow.run()` (the `optout_sync` timer, minutes instead of Adobe's once a
  day): profiles changed since the checkpoint whose flags differ from the agreed state are reconciled.

The agreed state (what both systems held after our last reconciliation) lives in the contact's ledger
row, so our own writes, coming back as changes, are recognised and cost no further write: no echo loop.
Conflicts follow Adobe's documented rule, `resolve_optout`.

Invariants:
- A profile whose flags equal its agreed state needs no write on either side; one whose flags differ
  is reconciled (and its agreed state saved) or, on failure, comes again with the next run.
- Every reconciliation leaves the agreed state equal to Campaign's flags (Campaign is patched to the
  decision, or holds it already), and a new profile's agreed state is the flags it was created with.
  So a profile Campaign has not modified since it was created holds its agreed flags: the first run
  after an initial load, which reads back every profile the load created, skips those without reading
  the ledger (`LoadWindow`). An opt-out made in Campaign during the load modifies its profile after its
  creation (`lastModified` > `created`): that profile is read, compared and reconciled as any other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.acs.client import CampaignClient
from shared.acs.values import parse_campaign_time
from shared.d365.batch import BatchRequest
from shared.d365.client import DataverseClient
from shared.errors import ServiceError
from shared.flows.deadline import Deadline
from shared.flows.names import CONTACTS_SYNC, OPTOUT_SYNC
from shared.logs import correlation, log_event
from shared.mapping.model import OptOutPair, SyncConfig
from shared.store import LedgerRecord, RunReport, StateStore
from shared.telemetry import metrics
from shared.telemetry.catalog import RECORDS

log = logging.getLogger(__name__)

FLOW = OPTOUT_SYNC
# The run's counts that are record outcomes, as the records metric names them (`errors`: a write failed).
RECORD_OUTCOMES = {
    "campaign_only": "campaign_only",
    "unchanged_since_load": "unchanged",
    "unchanged": "unchanged",
    "contact_missing": "contact_missing",
    "dynamics_updated": "dynamics_updated",
    "campaign_updated": "campaign_updated",
    "errors": "failed",
}
_LEDGER_READERS = 8  # parallel ledger reads per page (one per profile)
STREAM = "campaign_profiles"
AGREED = "optout"  # ledger `extra` key holding the agreed flags {campaign field: bool}


@dataclass(frozen=True)
class OptOutDecision:
    value: bool
    rule: str  # campaign_newer / opt_out_wins / agree / one_way


def resolve_optout(
    *, d365_value: bool, d365_modified_on: datetime | None, acs_value: bool, acs_modified_on: datetime | None
) -> OptOutDecision:
    """Adobe's bidirectional rule: if Campaign's attribute timestamp is newer than the Dynamics row's
    `modifiedon`, Campaign's value wins; otherwise (ties included) opt-out = TRUE wins."""
    if d365_value == acs_value:
        return OptOutDecision(d365_value, "agree")
    if acs_modified_on is not None and d365_modified_on is not None and acs_modified_on > d365_modified_on:
        return OptOutDecision(acs_value, "campaign_newer")
    return OptOutDecision(True, "opt_out_wins")


def timestamp_field(acs_field: str) -> str:
    """Campaign's per-flag timestamp (`blackList` is the odd one: `blackListAllLastModified`)."""
    return "blackListAllLastModified" if acs_field == "blackList" else f"{acs_field}LastModified"


@dataclass
class Reconciliation:
    contact_id: str
    agreed: dict[str, bool]
    d365_patch: dict[str, bool] = field(default_factory=dict)  # Dynamics column → value
    acs_patch: dict[str, bool] = field(default_factory=dict)  # Campaign field → value
    decisions: dict[str, str] = field(default_factory=dict)


class OptOutReconciler:
    """Decides and applies opt-out values for one contact, given both sides' current state."""

    def __init__(
        self,
        *,
        config: SyncConfig,
        dataverse: DataverseClient,
        campaign: CampaignClient,
        store: StateStore,
        direction: str | None = None,
    ) -> None:
        self.config = config
        self.pairs: list[OptOutPair] = list(config.optout.pairs)
        self.direction = direction or config.optout.direction
        self.dataverse = dataverse
        self.campaign = campaign
        self.store = store
        contact = config.contact_mapping
        self.mapping = contact
        self.resource = contact.acs_resource if contact else "profileAndServicesExt/profile"
        self.entity_set = (contact.d365_entity_set if contact else None) or "contacts"

    @property
    def enabled(self) -> bool:
        return self.direction != "disabled" and bool(self.pairs) and self.mapping is not None

    @property
    def d365_columns(self) -> list[str]:
        return ["contactid", "modifiedon", *(p.d365 for p in self.pairs)]

    def decide(self, contact_id: str, d365_row: dict[str, Any], profile: dict[str, Any]) -> Reconciliation:
        """Both sides' values → the value each flag should have, and the writes that get it there."""
        d365_time = parse_campaign_time(d365_row.get("modifiedon"))
        result = Reconciliation(contact_id, agreed={})
        for pair in self.pairs:
            d_value = bool(d365_row.get(pair.d365))
            c_value = bool(profile.get(pair.acs))
            if self.direction == "acs_to_d365":
                decision = OptOutDecision(c_value, "one_way")
            elif self.direction == "d365_to_acs":
                decision = OptOutDecision(d_value, "one_way")
            else:
                decision = resolve_optout(
                    d365_value=d_value,
                    d365_modified_on=d365_time,
                    acs_value=c_value,
                    acs_modified_on=parse_campaign_time(profile.get(timestamp_field(pair.acs))),
                )
            result.agreed[pair.acs] = decision.value
            result.decisions[pair.acs] = decision.rule
            if d_value != decision.value:
                result.d365_patch[pair.d365] = decision.value
            if c_value != decision.value:
                result.acs_patch[pair.acs] = decision.value
            if decision.rule != "agree":
                log_event(
                    log,
                    logging.DEBUG,
                    "optout.decision",
                    contact=contact_id,
                    field=pair.acs,
                    dynamics=d_value,
                    campaign=c_value,
                    value=decision.value,
                    rule=decision.rule,
                )
        return result

    def campaign_values(self, profile: dict[str, Any]) -> dict[str, bool]:
        return {p.acs: bool(profile.get(p.acs)) for p in self.pairs}

    def from_dynamics(self, contact_id: str, d365_row: dict[str, Any], pkey: str) -> Reconciliation | None:
        """Dynamics' flags moved away from the agreed state (ingress, two-way): read the profile, decide,
        write both sides as needed. Returns the reconciliation (its `agreed` to store), or None when the
        profile is gone."""
        profile = self.campaign.get(self.resource, pkey)
        if profile is None:
            return None
        result = self.decide(contact_id, d365_row, profile)
        self.write(result, pkey=pkey)
        return result

    def write(self, result: Reconciliation, *, pkey: str | None) -> None:
        if result.acs_patch and pkey:
            self.campaign.patch(self.resource, pkey, result.acs_patch)
        if result.d365_patch:
            self.dataverse.update(self.entity_set, result.contact_id, result.d365_patch)


@dataclass(frozen=True)
class LoadWindow:
    """When the contacts initial load ran, as its checkpoint notes it (`completed` None while it runs, or
    for a checkpoint older than that note)."""

    started: datetime
    completed: datetime | None

    def created_untouched(self, profile: dict[str, Any]) -> bool:
        """The profile was created while the load ran and Campaign has not modified it since: it holds the
        flags it was created with, its agreed state. (Campaign's key is unique, so a profile with a
        contact's key that existed when the load wrote that contact was updated by it, not created.)
        Campaign's clock and ours may differ a little: profiles near the window's edges may then be
        compared the ordinary way, with their ledger row."""
        created = parse_campaign_time(profile.get("created"))
        modified = parse_campaign_time(profile.get("lastModified"))
        return (
            self.completed is not None
            and created is not None
            and modified is not None
            and modified <= created
            and self.started <= created <= self.completed
        )


@dataclass(frozen=True)
class OptOutOptions:
    time_budget_seconds: float = 480.0
    page_size: int = 1000
    batch_size: int = 100
    changed_since_filter: str = "byLastModifiedSince"


class OptOutFlow:
    """The `optout_sync` timer: Campaign profiles changed since the checkpoint → Dynamics (and, two-way,
    Campaign too when the rule keeps a Dynamics opt-out)."""

    def __init__(
        self,
        *,
        reconciler: OptOutReconciler,
        store: StateStore,
        options: OptOutOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reconciler = reconciler
        self.store = store
        self.options = options or OptOutOptions()
        self._clock = clock

    def run(self) -> RunReport:
        report = RunReport(FLOW)
        r = self.reconciler
        if not r.enabled or r.direction == "d365_to_acs":
            report.notes.append(f"direction '{r.direction}': nothing flows from Campaign to Dynamics")
            self.store.reports.save(report.finish("succeeded"))
            return report
        deadline = Deadline(self.options.time_budget_seconds, self._clock)
        outcome = "succeeded"
        with correlation(f"run-{report.run_id}"), ThreadPoolExecutor(_LEDGER_READERS) as readers:
            checkpoint = self.store.checkpoints.get(FLOW, STREAM)
            since = parse_campaign_time(checkpoint.position)
            load = self._load_window()
            if checkpoint.position is None and r.direction == "bidirectional":
                # Two-way, the initial load reconciled every contact it wrote: start from its beginning
                # instead of re-reading every profile once.
                if load is None:
                    report.notes.append("waiting for the contacts initial load to finish")
                    self.store.reports.save(report.finish("waiting"))
                    return report
                since = load.started
            try:
                for page in r.campaign.iter_changed_since(
                    r.resource,
                    since,
                    filter_name=self.options.changed_since_filter,
                    line_count=self.options.page_size,
                ):
                    self._process_page(page, report, readers, load)
                    newest = max(
                        (parse_campaign_time(p.get("lastModified")) for p in page),
                        default=None,
                        key=lambda t: t or datetime.min.replace(tzinfo=UTC),
                    )
                    if newest is not None:
                        # `since` is inclusive: records at exactly this instant come again, harmlessly.
                        checkpoint = self.store.checkpoints.put(checkpoint, newest.isoformat())
                    report.count("pages")
                    if deadline.passed():
                        outcome = "stopped_for_time"
                        break
            except ServiceError as exc:
                report.error(error=str(exc))
                outcome = "failed"
        self.store.reports.save(report.finish(outcome))
        log_event(
            log, logging.INFO, "optout.run", run_id=report.run_id, outcome=outcome, **dict(report.counts)
        )
        for name, n in report.counts.items():
            if name in RECORD_OUTCOMES:
                metrics.count(RECORDS, n, flow=FLOW, mapping=r.mapping.name, outcome=RECORD_OUTCOMES[name])
        return report

    def _load_window(self) -> LoadWindow | None:
        """The contacts initial load's window, once it has finished (None before)."""
        load = self.store.checkpoints.get(CONTACTS_SYNC, self.reconciler.mapping.name)
        started = parse_campaign_time(load.data.get("initial_load_started_at"))
        if load.data.get("mode") != "delta" or started is None:
            return None
        return LoadWindow(started, parse_campaign_time(load.data.get("initial_load_completed_at")))

    def _process_page(
        self, page: list[dict[str, Any]], report: RunReport, readers: Executor, load: LoadWindow | None
    ) -> None:
        r = self.reconciler
        key_field = r.mapping.key.acs
        keyed: list[tuple[str, dict[str, Any]]] = []
        for profile in page:
            contact_id = str(profile.get(key_field) or "").lower()
            if not contact_id:
                report.count("campaign_only")
            elif load is not None and load.created_untouched(profile):
                report.count("unchanged_since_load")  # the load's own writes coming back
            else:
                keyed.append((contact_id, profile))
        # One ledger read per remaining profile, several at a time.
        entries = readers.map(lambda item: self.store.ledger.get(r.mapping.name, item[0]), keyed)
        candidates: dict[str, tuple[dict[str, Any], LedgerRecord | None]] = {}
        for (contact_id, profile), entry in zip(keyed, entries, strict=True):
            agreed = (entry.extra.get(AGREED) if entry else None) or None
            if agreed == r.campaign_values(profile):
                report.count("unchanged")  # includes our own writes coming back
                continue
            candidates[contact_id] = (profile, entry)
        for chunk in _chunks(list(candidates), self.options.batch_size):
            rows = self._read_contacts(chunk)
            results = []
            for contact_id in chunk:
                profile, entry = candidates[contact_id]
                row = rows.get(contact_id)
                if row is None:
                    report.count("contact_missing")
                    continue
                results.append((self.reconciler.decide(contact_id, row, profile), profile, entry))
            self._write(results, report)

    def _read_contacts(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        r = self.reconciler
        condition = " or ".join(f"contactid eq {contact_id}" for contact_id in ids)
        rows: dict[str, dict[str, Any]] = {}
        for page in r.dataverse.iter_pages(r.entity_set, select=r.d365_columns, filter=condition):
            for row in page.rows:
                rows[str(row["contactid"]).lower()] = row
        return rows

    def _write(
        self, results: list[tuple[Reconciliation, dict, LedgerRecord | None]], report: RunReport
    ) -> None:
        r = self.reconciler
        updates = [
            (res, BatchRequest.update(r.entity_set, res.contact_id, res.d365_patch))
            for res, _, _ in results
            if res.d365_patch
        ]
        failed: set[str] = set()
        if updates:
            outcomes = r.dataverse.execute_batch([u for _, u in updates], continue_on_error=True)
            for (res, _), outcome in zip(updates, outcomes, strict=True):
                if outcome.ok:
                    report.count("dynamics_updated")
                else:
                    failed.add(res.contact_id)
                    report.error(contact=res.contact_id, status=outcome.status, error=outcome.error_message)
        for res, profile, entry in results:
            if res.contact_id in failed:
                continue
            if res.acs_patch:
                try:
                    r.campaign.patch(r.resource, profile["PKey"], res.acs_patch)
                    report.count("campaign_updated")
                except ServiceError as exc:
                    report.error(contact=res.contact_id, error=str(exc))
                    continue
            if entry is not None:
                self._save_agreed(entry, res.agreed)

    def _save_agreed(self, entry: LedgerRecord, agreed: dict[str, bool]) -> None:
        self.store.ledger.update(
            entry.mapping,
            entry.source_id,
            lambda fresh: (fresh or entry.evolve(etag=None)).evolve(
                extra={**(fresh or entry).extra, AGREED: agreed}
            ),
            read=entry,
        )


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
