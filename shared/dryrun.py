"""Dry run of the ingress: what a sync would write to Campaign for some Dynamics rows, as a field-level
diff against Campaign's current records, without writing anything (Adobe's integration had no dry run).

It decides like `IngressFlow` (same mapping engine, same ledger rules for filter exits, deletes and
unchanged content) but only reads: Dynamics rows and metadata, the ledger, and Campaign records looked
up by their key (one engine "read" each).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.acs.values import FieldChange, diff
from shared.errors import ServiceError
from shared.flows.ingress import IngressFlow, MappingContext
from shared.mapping.engine import MappedRecord, MappingError, source_row_from_webapi
from shared.mapping.model import TableMapping
from shared.store import LedgerRecord, RecordStatus

CREATE, UPDATE, DELETE, UNCHANGED, EXCLUDED, ERROR = (
    "create",
    "update",
    "delete",
    "unchanged",
    "excluded",
    "error",
)
ACTIONS = (CREATE, UPDATE, DELETE, UNCHANGED, EXCLUDED, ERROR)


@dataclass(frozen=True)
class RecordPlan:
    record_id: str
    action: str
    reason: str = ""
    changes: list[FieldChange] = field(default_factory=list)
    campaign_key: str | None = None  # Campaign's PKey of the current record

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def show_value(value: Any) -> str:
    return "(empty)" if value is None else json.dumps(value, ensure_ascii=False, default=str)


class DryRun:
    """Plans the sync of Dynamics rows for one table mapping. `replay=True` plans as a replay would
    (every mapped field, also those that do not apply updates)."""

    def __init__(self, ingress: IngressFlow, *, replay: bool = False) -> None:
        self.ingress = ingress
        self.replay = replay

    def plan(
        self, mapping: TableMapping, *, ids: Iterable[str] = (), limit: int = 25
    ) -> Iterator[RecordPlan]:
        """Plans for the rows with these ids (a missing row plans its deletion), or for the first
        `limit` rows of the table."""
        ctx = self.ingress.context(mapping)
        if ids:
            for record_id in ids:
                row = self.ingress.dataverse.get(
                    ctx.entity_set, record_id, select=ctx.engine.select, annotations=True
                )
                yield self._plan_row(ctx, row) if row is not None else self._plan_deletion(ctx, record_id)
            return
        if limit <= 0:
            return
        pages = self.ingress.dataverse.iter_pages(
            ctx.entity_set, select=ctx.engine.select, page_size=min(limit, 5000), annotations=True
        )
        for row in itertools.islice((row for page in pages for row in page.rows), limit):
            yield self._plan_row(ctx, row)

    # -- one record ----------------------------------------------------------------------------------

    def _current(self, ctx: MappingContext, key: str) -> dict[str, Any] | None:
        k = ctx.mapping.key
        return self.ingress.campaign.find_one_by_key(ctx.mapping.acs_resource, k.acs_filter, k.acs, key)

    def _plan_row(self, ctx: MappingContext, raw: dict[str, Any]) -> RecordPlan:
        row = source_row_from_webapi(raw, id_column=ctx.id_column)
        try:
            mapped = ctx.engine.map(row)
        except MappingError as exc:
            return RecordPlan(row.id, ERROR, f"the sync would dead-letter it: {exc}")
        entry = self.ingress.store.ledger.get(ctx.mapping.name, row.id)
        try:
            if not mapped.included:
                return self._plan_filter_exit(ctx, row.id, mapped, entry)
            return self._plan_write(ctx, row.id, mapped, entry)
        except ServiceError as exc:
            return RecordPlan(row.id, ERROR, f"Campaign look-up failed: {exc}")

    def _plan_write(
        self, ctx: MappingContext, record_id: str, mapped: MappedRecord, entry: LedgerRecord | None
    ) -> RecordPlan:
        current = self._current(ctx, mapped.key)
        pkey = current.get("PKey") if current else None
        synced = entry is not None and entry.status == RecordStatus.SYNCED and bool(entry.target_key)
        if synced and not self.replay and entry.content_hash == mapped.content_hash:
            # The sync skips a record whose content it already wrote, whatever Campaign holds now.
            changes = diff(mapped.payload if current is None else mapped.update_payload, current)
            reason = "no change since the last sync"
            if current is None:
                reason += "; missing from Campaign (deleted there?): a replay would recreate it"
            elif changes:
                reason += "; Campaign differs (changed outside the sync): a replay would rewrite these"
            return RecordPlan(record_id, UNCHANGED, reason, changes, pkey)
        if current is None:
            return RecordPlan(
                record_id, CREATE, "not in Campaign", diff({**mapped.payload, **mapped.optout}, None)
            )
        full = self.replay or not synced
        changes = diff(mapped.payload if full else mapped.update_payload, current)
        if not changes:
            return RecordPlan(record_id, UNCHANGED, "Campaign already holds these values", [], pkey)
        if self.replay:
            reason = "replay: every mapped field"
        elif not synced:
            reason = "not synced yet: every mapped field"
        else:
            reason = "changed in Dynamics"
        return RecordPlan(record_id, UPDATE, reason, changes, pkey)

    def _plan_filter_exit(
        self, ctx: MappingContext, record_id: str, mapped: MappedRecord, entry: LedgerRecord | None
    ) -> RecordPlan:
        row_filter = ctx.mapping.filter
        was_synced = entry is not None and entry.status == RecordStatus.SYNCED and bool(entry.target_key)
        if was_synced and row_filter is not None and row_filter.delete_filtered_out:
            current = self._current(ctx, mapped.key)
            if current is not None:
                return RecordPlan(record_id, DELETE, "left the filter", [], current.get("PKey"))
            return RecordPlan(record_id, EXCLUDED, "left the filter; already absent from Campaign")
        if was_synced:
            return RecordPlan(record_id, EXCLUDED, "left the filter; Campaign's record is kept")
        return RecordPlan(record_id, EXCLUDED, "outside the filter")

    def _plan_deletion(self, ctx: MappingContext, record_id: str) -> RecordPlan:
        record_id = record_id.lower()
        try:
            current = self._current(ctx, record_id)
        except ServiceError as exc:
            return RecordPlan(record_id, ERROR, f"Campaign look-up failed: {exc}")
        if current is None:
            return RecordPlan(record_id, UNCHANGED, "not in Dynamics nor in Campaign")
        if not ctx.mapping.apply_deletes:
            return RecordPlan(
                record_id, UNCHANGED, "deleted in Dynamics; apply_deletes is off", [], current.get("PKey")
            )
        return RecordPlan(record_id, DELETE, "deleted in Dynamics", [], current.get("PKey"))
