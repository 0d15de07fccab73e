"""What verify compares and how it judges one key: a Dynamics row mapped as a sync would, against the
Campaign records found with its key; and the figures of one mapping."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.acs.values import FieldChange, flatten, lookup, same
from shared.flows.ingress import MappingContext
from shared.mapping.engine import MappingError, source_row_from_webapi

MISSING, MISMATCHED, EXTRA = "missing", "mismatched", "extra"
# What a Dynamics row is to the mapping.
INCLUDED, EXCLUDED, UNMAPPABLE = 0, 1, 2


@dataclass(frozen=True)
class DynamicsRow:
    key: str
    source_id: str
    state: int  # INCLUDED, EXCLUDED or UNMAPPABLE
    values: dict[str, Any] | None = None  # compared field path → mapped value (INCLUDED only)


@dataclass(frozen=True)
class Finding:
    """What one key looks like on both sides."""

    key: str
    source_id: str
    campaign_keys: tuple[str, ...] = ()
    missing: bool = False
    differences: tuple[FieldChange, ...] = ()  # mismatched when not empty
    extra: int = 0  # Campaign records that should not be there (surplus duplicates included)
    duplicates: int = 0
    kept: int = 0  # Campaign records the mapping keeps on purpose (no row, or a row outside the filter)
    why: str = ""

    @property
    def mismatched(self) -> bool:
        return bool(self.differences)

    @property
    def drifted(self) -> bool:
        return self.missing or self.mismatched or self.extra > 0

    @property
    def kind(self) -> str:
        return MISSING if self.missing else MISMATCHED if self.mismatched else EXTRA

    def example(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "key": self.key}
        if self.source_id != self.key:
            data["id"] = self.source_id
        if self.campaign_keys:
            data["campaign_keys"] = list(self.campaign_keys)
        if self.differences:
            data["differences"] = [
                {"field": c.field, "campaign": c.old, "dynamics": c.new} for c in self.differences
            ]
        data["why"] = self.why
        return data


class DriftRules:
    """One mapping's rules: how a row and a record are reduced to compared values, and what is drift."""

    def __init__(self, ctx: MappingContext) -> None:
        self.ctx = ctx
        self.mapping = ctx.mapping
        # Two-way opt-out flags are `engine.optout_fields`, outside `fields`: never compared here.
        self.paths = sorted({f.acs for f in ctx.engine.fields if f.apply_updates})
        row_filter = ctx.mapping.filter
        self.delete_filtered_out = row_filter is not None and row_filter.delete_filtered_out

    def dynamics_row(self, raw: dict[str, Any]) -> DynamicsRow:
        row = source_row_from_webapi(raw, id_column=self.ctx.id_column)
        try:
            mapped = self.ctx.engine.map(row)
        except MappingError:
            key = str(row.values.get(self.mapping.key.d365, row.id)).lower()
            return DynamicsRow(key, row.id, UNMAPPABLE)
        if not mapped.included:
            return DynamicsRow(mapped.key, row.id, EXCLUDED)
        return DynamicsRow(mapped.key, row.id, INCLUDED, dict(flatten(mapped.update_payload)))

    def campaign_key(self, record: dict[str, Any]) -> str | None:
        """The record's key as the sync writes it (lower case), None for a Campaign-only record."""
        value = lookup(record, self.mapping.key.acs)
        return None if value is None or value == "" else str(value).lower()

    def campaign_values(self, record: dict[str, Any]) -> dict[str, Any]:
        return {path: lookup(record, path) for path in self.paths}

    def pack(self, values: dict[str, Any]) -> str:
        """Compact JSON for the spill database: the values in `paths` order, without the field names
        (equal texts mean equal values, so most records compare without being decoded)."""
        return json.dumps(
            [values.get(path) for path in self.paths], separators=(",", ":"), ensure_ascii=False, default=str
        )

    def unpack(self, text: str) -> dict[str, Any]:
        return dict(zip(self.paths, json.loads(text), strict=True))

    def judge(self, key: str, row: DynamicsRow | None, records: list[tuple[str, dict[str, Any]]]) -> Finding:
        """`records`: (PKey, compared values) of every Campaign record with this key."""
        pkeys = tuple(pkey for pkey, _ in records)
        if row is None:
            if not records:
                return Finding(key, key)
            if self.mapping.apply_deletes:
                return Finding(key, key, pkeys, extra=len(records), why="no Dynamics row has this key")
            return Finding(key, key, pkeys, kept=len(records))
        if row.state == UNMAPPABLE:
            return Finding(key, row.source_id, pkeys)
        if row.state == EXCLUDED:
            if records and self.delete_filtered_out:
                why = "the Dynamics row is outside the mapping's filter (delete_filtered_out)"
                return Finding(key, row.source_id, pkeys, extra=len(records), why=why)
            return Finding(key, row.source_id, pkeys, kept=len(records))
        if not records:
            return Finding(key, row.source_id, missing=True, why="not in Campaign")
        assert row.values is not None
        differences = min((self.differences(row.values, values) for _, values in records), key=len)
        surplus = len(records) - 1
        why = []
        if differences:
            why.append("Campaign holds other values")
        if surplus:
            why.append(f"{len(records)} Campaign records have this key")
        return Finding(
            key,
            row.source_id,
            pkeys,
            differences=tuple(differences),
            extra=surplus,
            duplicates=surplus,
            why="; ".join(why),
        )

    @staticmethod
    def differences(dynamics: dict[str, Any], campaign: dict[str, Any]) -> list[FieldChange]:
        return [
            FieldChange(path, campaign.get(path), value)
            for path, value in dynamics.items()
            if not same(value, campaign.get(path))
        ]


# -- the result of one mapping -----------------------------------------------------------------------------


@dataclass
class MappingResult:
    mapping: str
    sample: bool = False
    dynamics: int = 0  # Dynamics rows read
    campaign: int = 0  # Campaign records read
    missing: int = 0
    extra: int = 0  # None in the JSON of a sample: not computed
    mismatched: int = 0
    duplicates: int = 0  # surplus records of keys held twice or more (part of extra)
    repaired: int = 0  # drifted keys in line after their repair (checked again)
    remaining: int = 0  # drifted keys still drifting (all of them without a repair)
    kept: int = 0  # Campaign records the mapping keeps on purpose (not drift)
    excluded: int = 0  # Dynamics rows outside the filter
    unkeyed: int = 0  # Campaign records without a key value (Campaign-only)
    unmappable: int = 0
    complete: bool = True  # False: the time budget ran out before the end
    seconds: float = 0.0
    spill_bytes: int = 0
    error: str | None = None
    drifted: int = 0  # keys with any drift
    examples: list[dict[str, Any]] = field(default_factory=list)
    repair_outcomes: Counter = field(default_factory=Counter)

    @property
    def drift_remains(self) -> bool:
        return self.remaining > 0 or not self.complete or self.error is not None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mapping": self.mapping,
            "dynamics": self.dynamics,
            "campaign": self.campaign,
            "missing": self.missing,
            "extra": None if self.sample else self.extra,
            "mismatched": self.mismatched,
            "repaired": self.repaired,
            "remaining": self.remaining,
            "duplicates": self.duplicates,
            "kept": self.kept,
            "excluded": self.excluded,
            "unkeyed": self.unkeyed,
            "unmappable": self.unmappable,
            "complete": self.complete,
            "examples": self.examples,
        }
        if self.error is not None:
            data["error"] = self.error
        return data

    def summary(self) -> str:
        extra = "extra not searched (sample)" if self.sample else f"{self.extra} extra"
        text = (
            f"{self.dynamics:,} Dynamics row(s), {self.campaign:,} Campaign record(s): "
            f"{self.missing} missing, {extra}, {self.mismatched} mismatched"
        )
        if self.duplicates:
            text += f" ({self.duplicates} duplicate(s))"
        if self.repair_outcomes:
            text += f"; {self.repaired} repaired, {self.remaining} still drifting"
        if not self.complete:
            text += "; stopped: the time budget ran out"
        return text
