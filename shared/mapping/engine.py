"""The mapping engine: one Dynamics row → the Campaign record for one table mapping.

Rows arrive in two shapes, both normalised to `SourceRow` first: Web API rows (change tracking, reads:
`_x_value` lookups, `@OData.Community.Display.V1.FormattedValue` annotations, ISO date strings) and webhook
change records (`shared.d365.webhook.ChangeRecord`: plain values, references, FormattedValues).
The engine then applies the filter, replacements, picklist label/value choice and type conversion, and
builds the nested Campaign payload plus a content hash, so an unchanged record costs no Campaign call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.mapping.model import FieldMapping, FilterCondition, OptOutPair, TableMapping

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
PICKLIST_TYPES = frozenset({"Picklist", "State", "Status", "MultiSelectPicklist"})
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
# Dataverse AttributeType → the conversion applied when the field mapping names no type.
_DEFAULT_TYPES = {
    "String": "String",
    "Memo": "String",
    "EntityName": "String",
    "Uniqueidentifier": "String",
    "Lookup": "String",
    "Customer": "String",
    "Owner": "String",
    "Integer": "Integer",
    "BigInt": "Integer",
    "Decimal": "Decimal",
    "Money": "Decimal",
    "Double": "Double",
    "Boolean": "Boolean",
    "DateTime": "DateTime",
}


def default_type(column: ColumnInfo) -> str | None:
    """The conversion a column gets when its field mapping names no type (None: passed through)."""
    return "Date" if column.date_only else _DEFAULT_TYPES.get(column.type)


class MappingError(ValueError):
    """A value could not be converted as the mapping asks; the record is dead-lettered, not retried."""


@dataclass(frozen=True)
class ColumnInfo:
    """What the engine needs from Dataverse metadata about one column."""

    type: str  # Dataverse AttributeType, e.g. "String", "Picklist", "DateTime"
    options: Mapping[int, str] = field(default_factory=dict)  # picklist value → label
    date_only: bool = False


@dataclass(frozen=True)
class SourceRow:
    id: str
    version: int | None
    values: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    modified_on: datetime | None = None


@dataclass(frozen=True)
class MappedRecord:
    key: str  # the cross-system id, e.g. the contactid written to Campaign's externalId
    included: bool  # passes the mapping's filter
    payload: dict[str, Any]  # every mapped field, for create, initial load and replay
    update_payload: dict[str, Any]  # only fields with apply_updates, for steady-state updates
    content_hash: str  # hash of update_payload: equal hash → nothing to write
    # Opt-out flags kept out of the payload (bidirectional opt-out): Campaign field → Dynamics value.
    optout: dict[str, bool] = field(default_factory=dict)


def _parse_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def source_row_from_webapi(row: Mapping[str, Any], *, id_column: str) -> SourceRow:
    """Normalise a Web API row: `_x_value` → `x` (the referenced id), annotations → labels."""
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for name, value in row.items():
        if name.startswith("@"):
            continue
        if name.endswith(FORMATTED):
            column = name[: -len(FORMATTED)]
            if column.startswith("_") and column.endswith("_value"):
                column = column[1:-6]
            labels[column] = value
        elif "@" in name:
            continue  # other annotations (lookup logical names, navigation links)
        elif name.startswith("_") and name.endswith("_value"):
            values[name[1:-6]] = value
        else:
            values[name] = value
    version = row.get("versionnumber")
    if version is None and isinstance(row.get("@odata.etag"), str):
        version = row["@odata.etag"].removeprefix('W/"').rstrip('"') or None
    return SourceRow(
        id=str(row[id_column]).lower(),
        version=int(version) if version is not None else None,
        values=values,
        labels=labels,
        modified_on=_parse_datetime(row.get("modifiedon")),
    )


def source_row_from_webhook(record: Any, *, id_column: str) -> SourceRow:
    """Normalise a webhook change record: the post image overlaid with the Target's changed columns."""
    values = {**record.post_image, **record.attributes}
    values.setdefault(id_column, record.id)
    version = record.row_version or values.get("versionnumber")
    return SourceRow(
        id=record.id.lower(),
        version=int(version) if version not in (None, "") else None,
        values=values,
        labels=dict(record.formatted),
        modified_on=_parse_datetime(values.get("modifiedon")),
    )


def content_hash(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def _same(a: Any, b: Any) -> bool:
    """Loose equality for configured values: JSON config says 1 or "1" or true for the same thing."""
    if a == b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    return a is not None and b is not None and str(a) == str(b)


def _comparable(row_value: Any, config_value: Any) -> tuple[Any, Any]:
    """Coerce a filter's configured value to the row value's type so gt/lt compare like with like."""
    when = _parse_datetime(row_value) if isinstance(row_value, datetime | str) else None
    if when is not None and isinstance(config_value, str) and _parse_datetime(config_value) is not None:
        return when, _parse_datetime(config_value)
    if isinstance(row_value, bool) or isinstance(config_value, bool):
        return str(row_value).lower(), str(config_value).lower()
    if isinstance(row_value, int | float | Decimal) and not isinstance(config_value, int | float | Decimal):
        try:
            return Decimal(str(row_value)), Decimal(str(config_value))
        except InvalidOperation:
            return str(row_value), str(config_value)
    return row_value, config_value


def _condition_holds(condition: FilterCondition, values: Mapping[str, Any]) -> bool:
    value = values.get(condition.field)
    if condition.op == "null":
        return value is None or value == ""
    if condition.op == "not_null":
        return value is not None and value != ""
    if condition.op == "in":
        return any(_same(value, candidate) for candidate in condition.value)
    if value is None:
        return condition.op == "ne"
    if condition.op == "contains":
        return str(condition.value).casefold() in str(value).casefold()
    left, right = _comparable(value, condition.value)
    try:
        return {
            "eq": lambda: left == right,
            "ne": lambda: left != right,
            "gt": lambda: left > right,
            "ge": lambda: left >= right,
            "lt": lambda: left < right,
            "le": lambda: left <= right,
        }[condition.op]()
    except TypeError:
        return False  # incomparable types (text vs number): the condition does not hold


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return value != 0
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise ValueError(f"'{value}' is not a boolean")


def _to_datetime_text(value: Any) -> str:
    when = _parse_datetime(value)
    if when is None:
        raise ValueError(f"'{value}' is not a date-time")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _to_date_text(value: Any) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and len(value) == 10:
        return date.fromisoformat(value).isoformat()
    when = _parse_datetime(value)
    if when is None:
        raise ValueError(f"'{value}' is not a date")
    return when.date().isoformat()


def _to_number(value: Any, kind: str) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"'{value}' is a boolean, not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"'{value}' is not a number") from None
    if kind == "Integer":
        if number != number.to_integral_value():
            raise ValueError(f"'{value}' is not a whole number")
        return int(number)
    return float(number)


_CONVERTERS = {
    "Boolean": _to_bool,
    "Integer": lambda v: _to_number(v, "Integer"),
    "Decimal": lambda v: _to_number(v, "Decimal"),
    "Double": lambda v: _to_number(v, "Double"),
    "DateTime": _to_datetime_text,
    "Date": _to_date_text,
    "String": lambda v: (
        v if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, list | dict) else str(v)
    ),
}


class MappingEngine:
    """Applies one `TableMapping` (plus, for contacts, the opt-out pairs flowing Dynamics → Campaign)."""

    def __init__(
        self,
        mapping: TableMapping,
        *,
        columns: Mapping[str, ColumnInfo] | None = None,
        optout_pairs: Iterable[OptOutPair] = (),
        optout_in_payload: bool = True,
    ) -> None:
        self.mapping = mapping
        self.columns = dict(columns or {})
        optout_fields = [FieldMapping(d365=pair.d365, acs=pair.acs, type="Boolean") for pair in optout_pairs]
        # One-way opt-out rides along as Boolean fields that always apply updates; two-way opt-out is
        # returned apart, for the conflict rule to decide.
        self.fields: list[FieldMapping] = list(mapping.fields) + (optout_fields if optout_in_payload else [])
        self.optout_fields = [] if optout_in_payload else optout_fields
        self._replacements: dict[str, list[tuple[Any, Any]]] = {}
        for replacement in mapping.replacements:
            self._replacements.setdefault(replacement.field, []).append(
                (replacement.from_value, replacement.to_value)
            )

    @property
    def source_columns(self) -> list[str]:
        """Every Dynamics column the engine reads: the $select of change tracking and reads."""
        names = {self.mapping.key.d365, "versionnumber", "modifiedon"}
        names.update(f.d365 for f in self.fields + self.optout_fields)
        if self.mapping.filter:
            names.update(c.field for c in self.mapping.filter.conditions)
        return sorted(names)

    @property
    def select(self) -> list[str]:
        """`source_columns` as the Web API's `$select` names them: lookups as `_<name>_value`."""
        return [
            f"_{name}_value" if name in self.columns and self.columns[name].type in LOOKUP_TYPES else name
            for name in self.source_columns
        ]

    def includes(self, row: SourceRow) -> bool:
        row_filter = self.mapping.filter
        if row_filter is None:
            return True
        results = (_condition_holds(c, row.values) for c in row_filter.conditions)
        return all(results) if row_filter.combine == "and" else any(results)

    def _value(self, field_mapping: FieldMapping, row: SourceRow) -> Any:
        name = field_mapping.d365
        raw = row.values.get(name)
        for original, replacement in self._replacements.get(name, ()):
            if _same(raw, original):
                return replacement
        if raw is None:
            return None
        column = self.columns.get(name)
        # Without metadata, an int with a FormattedValue is a choice; lookups and money have labels too.
        if column is not None:
            picklist = column.type in PICKLIST_TYPES
        else:
            picklist = isinstance(raw, int) and not isinstance(raw, bool) and name in row.labels
        style = field_mapping.picklist_values or self.mapping.picklist_values
        if picklist and style == "label":
            label = row.labels.get(name)
            if label is None and column is not None and isinstance(raw, int):
                label = column.options.get(raw)
            if label is not None:
                raw = label
            # A multi-select without labels stays a list of values, joined below by the String converter.
        kind = field_mapping.type
        if kind is None and column is not None:
            kind = default_type(column)
        if kind is None or (picklist and style == "label"):
            return raw if not isinstance(raw, Decimal) else float(raw)
        try:
            return _CONVERTERS[kind](raw)
        except (ValueError, InvalidOperation, TypeError) as exc:
            raise MappingError(f"mapping '{self.mapping.name}': {name} → {field_mapping.acs}: {exc}") from exc

    def map(self, row: SourceRow) -> MappedRecord:
        key_value = row.values.get(self.mapping.key.d365, row.id)
        payload: dict[str, Any] = {}
        update_payload: dict[str, Any] = {}
        _set_path(payload, self.mapping.key.acs, str(key_value).lower())
        for field_mapping in self.fields:
            value = self._value(field_mapping, row)
            _set_path(payload, field_mapping.acs, value)
            if field_mapping.apply_updates:
                _set_path(update_payload, field_mapping.acs, value)
        return MappedRecord(
            key=str(key_value).lower(),
            included=self.includes(row),
            payload=payload,
            update_payload=update_payload,
            content_hash=content_hash(update_payload),
            optout={f.acs: bool(self._value(f, row)) for f in self.optout_fields},
        )
