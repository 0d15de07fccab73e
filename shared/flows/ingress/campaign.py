"""The Campaign side of one record's write: actions run under the record's lease (see `records`), each
answering the outcome and the ledger fields the lease is released with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.acs.client import CampaignClient
from shared.errors import ConflictError, NotFoundError
from shared.flows.ingress.common import MappingContext, Outcome
from shared.flows.optout import AGREED, OptOutReconciler
from shared.mapping.engine import MappedRecord, SourceRow
from shared.store import LedgerRecord, RecordStatus

# What an action answers: the outcome and the ledger fields to release the lease with.
Action = Callable[[LedgerRecord], tuple[Outcome, dict[str, Any]]]


def settled(**changes: Any) -> dict[str, Any]:
    """The ledger fields of a record released in a settled state (no error, no lease, no doubt)."""
    return {
        "error": None,
        "attempts": 0,
        "next_attempt_at": None,
        "first_failed_at": None,
        "lease": None,
        "recheck": False,
        **changes,
    }


class CampaignWrites:
    def __init__(self, campaign: CampaignClient, optout: OptOutReconciler | None) -> None:
        self.campaign = campaign
        self.optout = optout

    def optout_moved(self, base: LedgerRecord, mapped: MappedRecord) -> bool:
        """Two-way opt-out: Dynamics' flags differ from the state both systems last agreed on."""
        two_way = self.optout is not None and self.optout.direction == "bidirectional"
        return two_way and bool(mapped.optout) and base.extra.get(AGREED) != mapped.optout

    def upsert(
        self,
        ctx: MappingContext,
        row: SourceRow,
        mapped: MappedRecord,
        *,
        full: bool,
        skip_lookup: bool,
        same: bool,
        fields: dict[str, Any] | None = None,
    ) -> Action:
        """Create or update the Campaign record (and reconcile two-way opt-outs); `same`: Campaign holds
        the content already, only the opt-outs moved. `fields`: more ledger fields to release with."""

        def upsert(held: LedgerRecord) -> tuple[Outcome, dict[str, Any]]:
            extra = dict(held.extra)
            if same:
                outcome, target_key = Outcome.UNCHANGED, held.target_key
            else:
                outcome, target_key = self.write(ctx, held, mapped, full=full, skip_lookup=skip_lookup)
            if outcome == Outcome.CREATED and mapped.optout:
                extra[AGREED] = mapped.optout  # written with the new profile
            elif self.optout_moved(held, mapped):
                reconciled = self.optout.from_dynamics(held.source_id, row.values, target_key)
                if reconciled is not None:
                    extra[AGREED] = reconciled.agreed
                    outcome = Outcome.UPDATED if outcome == Outcome.UNCHANGED else outcome
            released = settled(
                status=RecordStatus.SYNCED,
                content_hash=mapped.content_hash,
                target_key=target_key,
                extra=extra,
            )
            return outcome, {**released, **(fields or {})}

        return upsert

    def delete(self, ctx: MappingContext, outcome: Outcome, fields: dict[str, Any]) -> Action:
        """Delete the Campaign record (found by key when the ledger has none)."""

        def delete(held: LedgerRecord) -> tuple[Outcome, dict[str, Any]]:
            target = held.target_key or self.find(ctx, held.source_id)
            if target:
                self.campaign.delete(ctx.mapping.acs_resource, target)
            return outcome, fields

        return delete

    def write(
        self, ctx: MappingContext, base: LedgerRecord, mapped: MappedRecord, *, full: bool, skip_lookup: bool
    ) -> tuple[Outcome, str]:
        """Write to Campaign; answers the outcome and the Campaign key. A record whose Campaign key is not
        in the ledger is looked up by its business key first, unless the load knows Campaign had none."""
        resource = ctx.mapping.acs_resource
        body = mapped.payload if full else mapped.update_payload
        if base.target_key:
            try:
                self.campaign.patch(resource, base.target_key, body)
                return Outcome.UPDATED, base.target_key
            except NotFoundError:
                pass  # deleted in Campaign meanwhile: recreate below
        found = None if skip_lookup else self.find(ctx, mapped.key)
        if found is None:
            try:
                created = self.campaign.create(resource, {**mapped.payload, **mapped.optout})
                return Outcome.CREATED, created["PKey"]
            except ConflictError:
                found = self.find(ctx, mapped.key)
                if found is None:
                    raise
        self.campaign.patch(resource, found, mapped.payload)
        return Outcome.UPDATED, found

    def find(self, ctx: MappingContext, key: str) -> str | None:
        k = ctx.mapping.key
        record = self.campaign.find_one_by_key(ctx.mapping.acs_resource, k.acs_filter, k.acs, key)
        return record["PKey"] if record else None
