"""Record writes: one Dynamics row (or its deletion) made true in Campaign, whatever else is writing it.

Webhook deliveries arrive concurrently, out of order and twice, on several instances; timer runs,
retries and repairs write the same records. The write protocol keeps Campaign equal to Dynamics' latest
version anyway, with the ledger row of each record as its lock:

1. **Order.** A change older than the version the ledger records (by `versionnumber`, else by
   `modifiedon`), or an operation applied already, changes nothing (`STALE`, `DUPLICATE`).
2. **Lease.** Campaign is written only by the holder of the record's lease (ledger status `WRITING`,
   taken with the row's ETag, so one holder at a time across processes). A writer that finds the lease
   held does not write: it sets `recheck` on the row and answers `HANDED_OFF`.
3. **Release.** The holder releases the lease by saving the outcome with the ETag of its own lease row.
   If that fails because `recheck` was set meanwhile, it reads the row from Dynamics again and writes
   that before it releases; so the last write to Campaign is the newest state, whoever delivered it.
   If its lease expired and another writer took it, its own late write may have landed last: it repairs
   the record (reads it again and writes it under a new lease).
4. **Doubt.** A row whose `recheck` is set or whose lease expired (a writer stopped mid-write) says
   nothing about Campaign: the next writer reads the row from Dynamics and writes it without the
   "unchanged" shortcut; the timer retries expired leases like failed records.

Invariant: a ledger row `SYNCED` with content hash H and version v means Campaign holds H, written
after every other write of that record; while a write is open, the row is `WRITING` and claims nothing.
The only writes without a lease are a full load's into an empty ledger (their ledger rows are created
per page; a row another writer created meanwhile makes the load repair that record).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.acs.client import CampaignClient
from shared.d365.client import DataverseClient
from shared.errors import ServiceError
from shared.flows.ingress.campaign import Action, CampaignWrites, settled
from shared.flows.ingress.common import (
    NO_HINTS,
    IngressOptions,
    LoadHints,
    MappingContext,
    Mode,
    Outcome,
    PageLedgerWrites,
)
from shared.flows.ingress.order import already_applied
from shared.flows.ingress.outcomes import RecordOutcomes
from shared.flows.optout import OptOutReconciler
from shared.logs import log_event
from shared.mapping.engine import MappingError, SourceRow, source_row_from_webapi
from shared.store import LedgerConflict, LedgerRecord, RecordStatus, StateStore

log = logging.getLogger(__name__)

_RACE_ATTEMPTS = 5  # decisions taken again on fresh ledger state before a record is left to the timer
_REPAIR_DEPTH = 2  # repairs after a lost lease before the record is left to the timer
# Statuses under which a ledger row's target_key names a record this flow created in Campaign.
_HELD_IN_CAMPAIGN = frozenset({RecordStatus.SYNCED, RecordStatus.WRITING, RecordStatus.FAILED})


class _LeaseLost(Exception):
    """The lease expired during the write and another writer took the record."""


class RecordWriter:
    def __init__(
        self,
        *,
        dataverse: DataverseClient,
        campaign: CampaignClient,
        store: StateStore,
        options: IngressOptions,
        optout: OptOutReconciler | None = None,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.dataverse = dataverse
        self.campaign = campaign
        self.store = store
        self.options = options
        self.actions = CampaignWrites(campaign, optout)
        self._utcnow = utcnow
        self.outcomes = RecordOutcomes(store=store, options=options, utcnow=utcnow, log=log)

    # -- entry points -----------------------------------------------------------------------------------

    def sync(
        self,
        ctx: MappingContext,
        row: SourceRow,
        *,
        mode: Mode,
        operation_id: str | None = None,
        hints: LoadHints = NO_HINTS,
        depth: int = 0,
    ) -> Outcome:
        """Bring Campaign in line with one Dynamics row."""
        for attempt in range(_RACE_ATTEMPTS):
            try:
                return self._sync_once(
                    ctx,
                    row,
                    mode=mode,
                    operation_id=operation_id,
                    hints=hints if attempt == 0 else NO_HINTS,
                )
            except LedgerConflict:
                continue  # another writer moved this record meanwhile: decide again on fresh state
            except _LeaseLost:
                return self._after_lost_lease(ctx, row.id, depth)
        return self.outcomes.give_up(ctx, row.id)

    def delete(
        self,
        ctx: MappingContext,
        source_id: str,
        *,
        operation_id: str | None = None,
        confirmed: bool = False,
        doubt: bool = False,
        depth: int = 0,
    ) -> Outcome:
        """Apply a Dynamics deletion (per `apply_deletes`). `confirmed`: the row was just read and is
        gone, so a record in doubt is deleted without reading it again; `doubt`: whatever the ledger
        says, Campaign may still hold the record (a repair), so it is looked up and deleted."""
        source_id = source_id.lower()
        for _ in range(_RACE_ATTEMPTS):
            try:
                return self._delete_once(
                    ctx, source_id, operation_id=operation_id, confirmed=confirmed, doubt=doubt
                )
            except LedgerConflict:
                continue
            except _LeaseLost:
                return self._after_lost_lease(ctx, source_id, depth)
        return self.outcomes.give_up(ctx, source_id)

    def resync(
        self, ctx: MappingContext, source_id: str, *, mode: Mode = Mode.RETRY, depth: int = 0
    ) -> Outcome:
        """Read one row from Dynamics now and apply it, or its deletion when it is gone."""
        source_id = source_id.lower()
        try:
            fetched = self.read_row(ctx, source_id)
        except ServiceError as exc:
            return self.outcomes.leave_for_later(ctx, source_id, f"re-reading the row failed: {exc}")
        if fetched is None:
            return self.delete(ctx, source_id, confirmed=True, doubt=mode == Mode.REPAIR, depth=depth)
        return self.sync(
            ctx, source_row_from_webapi(fetched, id_column=ctx.id_column), mode=mode, depth=depth
        )

    def repair(self, ctx: MappingContext, source_id: str, *, campaign_keys: Iterable[str] = ()) -> Outcome:
        """Make Campaign hold what Dynamics holds for one record, whatever the ledger claims (drift found
        by `verify`). `campaign_keys`: the Campaign records found with this record's key; the surplus
        ones (all but the one the ledger points at, or the first) are deleted as duplicates."""
        source_id = source_id.lower()
        keys = list(dict.fromkeys(campaign_keys))
        if len(keys) > 1:
            entry = self.store.ledger.get(ctx.mapping.name, source_id)
            keep = entry.target_key if entry is not None and entry.target_key in keys else keys[0]
            for duplicate in keys:
                if duplicate != keep:
                    self.campaign.delete(ctx.mapping.acs_resource, duplicate)
                    log_event(
                        log,
                        logging.WARNING,
                        "ingress.duplicate_removed",
                        mapping=ctx.mapping.name,
                        id=source_id,
                        pkey=duplicate,
                    )
        return self.resync(ctx, source_id, mode=Mode.REPAIR)

    def read_row(self, ctx: MappingContext, source_id: str) -> dict[str, Any] | None:
        return self.dataverse.get(ctx.entity_set, source_id, select=ctx.engine.select, annotations=True)

    # -- one decision ------------------------------------------------------------------------------------

    def _sync_once(
        self, ctx: MappingContext, row: SourceRow, *, mode: Mode, operation_id: str | None, hints: LoadHints
    ) -> Outcome:
        mapping = ctx.mapping
        entry = None if hints.ledger_empty else self.store.ledger.get(mapping.name, row.id)
        if entry is not None and entry.leased(self._utcnow()):
            return self.outcomes.hand_off(ctx, entry)
        in_doubt = mode == Mode.REPAIR or (
            entry is not None and (entry.recheck or entry.status == RecordStatus.WRITING)
        )
        if entry is not None and hints.recheck_existing:
            in_doubt = True  # a first attempt at this page may have written Campaign without a lease
        if in_doubt and not mode.row_is_fresh and not self._as_new(entry, row, hints):
            return self.resync(ctx, row.id, mode=Mode.REPAIR)
        if not in_doubt:
            skip = already_applied(entry, row, operation_id)
            if skip:
                return self.outcomes.report(ctx, row.id, skip, version=row.version)
        try:
            mapped = ctx.engine.map(row)
        except MappingError as exc:
            base = entry or LedgerRecord(mapping.name, row.id)
            return self.outcomes.dead(ctx, base, exc, payload=row.values)

        base = (entry or LedgerRecord(mapping.name, row.id)).evolve(
            source_version=row.version, source_modified_on=row.modified_on, operation_id=operation_id
        )
        if not mapped.included:
            return self._leave_filter(ctx, base, in_doubt=in_doubt)
        # Created in Campaign before: steady-state updates write only the fields that apply updates.
        created = entry is not None and bool(entry.target_key) and entry.status in _HELD_IN_CAMPAIGN
        synced = not in_doubt and created and entry.status == RecordStatus.SYNCED
        same_content = synced and mode != Mode.REPLAY and entry.content_hash == mapped.content_hash
        if same_content and not self.actions.optout_moved(base, mapped):
            if (entry.source_version, entry.source_modified_on) != (row.version, row.modified_on):
                self.store.ledger.save(base)
            return self.outcomes.report(ctx, row.id, Outcome.UNCHANGED)
        upsert = self.actions.upsert(
            ctx,
            row,
            mapped,
            full=mode.writes_every_field or not created,
            skip_lookup=hints.campaign_empty,
            same=same_content,
        )
        if hints.ledger_writes is not None:
            return self._write_unleased(ctx, base, upsert, hints.ledger_writes, mapped.payload)
        return self._under_lease(ctx, self._acquire(base), upsert, previous=entry, payload=mapped.payload)

    def _delete_once(
        self, ctx: MappingContext, source_id: str, *, operation_id: str | None, confirmed: bool, doubt: bool
    ) -> Outcome:
        entry = self.store.ledger.get(ctx.mapping.name, source_id)
        if entry is not None and entry.leased(self._utcnow()):
            return self.outcomes.hand_off(ctx, entry)
        in_doubt = doubt or (entry is not None and (entry.recheck or entry.status == RecordStatus.WRITING))
        if in_doubt and not confirmed:
            return self.resync(ctx, source_id, mode=Mode.REPAIR)  # still gone? then deleted for real
        if not in_doubt and entry is not None and entry.status == RecordStatus.DELETED:
            return self.outcomes.report(ctx, source_id, Outcome.DUPLICATE)
        base = (entry or LedgerRecord(ctx.mapping.name, source_id)).evolve(operation_id=operation_id)
        return self._apply_deletion(ctx, base, previous=entry)

    def _apply_deletion(
        self, ctx: MappingContext, base: LedgerRecord, *, previous: LedgerRecord | None
    ) -> Outcome:
        gone = settled(status=RecordStatus.DELETED, target_key=None, content_hash=None, extra={})
        if not ctx.mapping.apply_deletes:
            self.store.ledger.save(base.evolve(**gone))
            return self.outcomes.report(ctx, base.source_id, Outcome.DELETE_NOT_APPLIED)
        held = self._acquire(base)
        return self._under_lease(
            ctx, held, self.actions.delete(ctx, Outcome.DELETED, gone), previous=previous
        )

    def _leave_filter(self, ctx: MappingContext, base: LedgerRecord, *, in_doubt: bool) -> Outcome:
        row_filter = ctx.mapping.filter
        # In doubt, Campaign may hold the record whatever the ledger says: the deletion looks it up by key.
        in_campaign = in_doubt or (base.target_key and base.status == RecordStatus.SYNCED)
        if in_campaign and row_filter is not None and row_filter.delete_filtered_out:
            excluded = settled(status=RecordStatus.EXCLUDED, target_key=None, content_hash=None)
            held = self._acquire(base)
            action = self.actions.delete(ctx, Outcome.FILTERED_OUT_DELETED, excluded)
            return self._under_lease(ctx, held, action, previous=None)
        if base.status != RecordStatus.EXCLUDED or base.etag is None or in_doubt:
            # Left alone in Campaign: keep its key so the record is updated if it re-enters the filter.
            self.store.ledger.save(base.evolve(**settled(status=RecordStatus.EXCLUDED, content_hash=None)))
        return self.outcomes.report(ctx, base.source_id, Outcome.EXCLUDED)

    def _as_new(self, entry: LedgerRecord | None, row: SourceRow, hints: LoadHints) -> bool:
        """A row in doubt must be the newest state to be written: a page row resumed after a load is,
        unless another writer recorded a newer version meanwhile; anything else is read again."""
        return (
            hints.recheck_existing
            and entry is not None
            and not entry.recheck
            and row.version is not None
            and entry.source_version is not None
            and row.version >= entry.source_version
        )

    # -- leases ------------------------------------------------------------------------------------------

    def _acquire(self, base: LedgerRecord) -> LedgerRecord:
        """Take the record's lease (LedgerConflict if another writer moved the row since it was read)."""
        expires = self._utcnow() + timedelta(seconds=self.options.lease_seconds)
        return self.store.ledger.save(
            base.evolve(
                status=RecordStatus.WRITING, lease=uuid.uuid4().hex, next_attempt_at=expires, recheck=False
            )
        )

    def _under_lease(
        self,
        ctx: MappingContext,
        held: LedgerRecord,
        action: Action,
        *,
        previous: LedgerRecord | None,
        payload: Any = None,
    ) -> Outcome:
        """Run a Campaign action while holding the lease, then release it with the action's result; when
        a recheck was asked meanwhile, apply the row as Dynamics holds it now before releasing."""
        source_id = held.source_id
        while True:
            outcome, fields = self.outcomes.attempt(ctx, held, action, payload)
            if fields is None:
                return outcome
            still_held = self._release(held, held.evolve(**fields))
            if still_held is None:
                self.outcomes.clear(previous)
                return self.outcomes.report(ctx, source_id, outcome)
            held, payload = still_held, None
            action = functools.partial(self._apply_now, ctx)

    def _release(self, held: LedgerRecord, final: LedgerRecord) -> LedgerRecord | None:
        """Save `final`, the released row; None when released, else the (still held) row whose recheck
        was asked, with the flag cleared and the lease extended."""
        while True:
            try:
                self.store.ledger.save(final)
                return None
            except LedgerConflict:
                current = self.store.ledger.get(final.mapping, final.source_id)
            mine = (
                current is not None and current.status == RecordStatus.WRITING and current.lease == held.lease
            )
            if not mine:
                raise _LeaseLost()
            if current.recheck:
                expires = self._utcnow() + timedelta(seconds=self.options.lease_seconds)
                return self.store.ledger.save(
                    current.evolve(
                        recheck=False, next_attempt_at=expires, target_key=final.target_key, extra=final.extra
                    )
                )
            final = final.evolve(etag=current.etag)  # only touched (a full read's mark): release again

    def _apply_now(self, ctx: MappingContext, held: LedgerRecord) -> tuple[Outcome, dict[str, Any]]:
        """Make Campaign hold the row as Dynamics holds it now (read again), under the held lease."""
        fetched = self.read_row(ctx, held.source_id)
        if fetched is None:
            if not ctx.mapping.apply_deletes:
                return Outcome.DELETE_NOT_APPLIED, settled(status=RecordStatus.DELETED, extra={})
            gone = settled(status=RecordStatus.DELETED, target_key=None, content_hash=None, extra={})
            return self.actions.delete(ctx, Outcome.DELETED, gone)(held)
        row = source_row_from_webapi(fetched, id_column=ctx.id_column)
        mapped = ctx.engine.map(row)
        versions = {"source_version": row.version, "source_modified_on": row.modified_on}
        if not mapped.included:
            row_filter = ctx.mapping.filter
            if row_filter is not None and row_filter.delete_filtered_out:
                excluded = settled(
                    status=RecordStatus.EXCLUDED, target_key=None, content_hash=None, **versions
                )
                return self.actions.delete(ctx, Outcome.FILTERED_OUT_DELETED, excluded)(held)
            return Outcome.EXCLUDED, settled(status=RecordStatus.EXCLUDED, content_hash=None, **versions)
        upsert = self.actions.upsert(
            ctx, row, mapped, full=not held.target_key, skip_lookup=False, same=False, fields=versions
        )
        return upsert(held)

    # -- a full load into an empty ledger ----------------------------------------------------------------

    def _write_unleased(
        self,
        ctx: MappingContext,
        base: LedgerRecord,
        upsert: Action,
        ledger_writes: PageLedgerWrites,
        payload: Any,
    ) -> Outcome:
        """No ledger row existed when the load began: write, and leave the row to be created with the
        page (see `pages.ChangeTrackingRead`)."""
        outcome, fields = self.outcomes.attempt(ctx, base, upsert, payload)
        if fields is not None:
            ledger_writes.add(base.evolve(**fields), outcome)
        return self.outcomes.report(ctx, base.source_id, outcome)

    # -- a lease lost mid-write -------------------------------------------------------------------------

    def _after_lost_lease(self, ctx: MappingContext, source_id: str, depth: int) -> Outcome:
        log_event(
            log, logging.WARNING, "ingress.lease_lost", mapping=ctx.mapping.name, id=source_id, depth=depth
        )
        if depth >= _REPAIR_DEPTH:
            return self.outcomes.give_up(ctx, source_id)
        return self.resync(ctx, source_id, mode=Mode.REPAIR, depth=depth + 1)
