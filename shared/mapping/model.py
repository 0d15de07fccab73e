"""The sync configuration: which Dynamics tables go to which Campaign resources, how, and what else
moves (email events, opt-outs). Loaded from app setting `SYNC_CONFIG` (inline JSON) or the file named
by `SYNC_CONFIG_PATH`, validated here with errors that name the mapping and the fields involved.

It expresses everything Adobe's integration offered (contracts.md section 4): per-table key pair,
fields with `apply_updates`, value replacements, filters combined with and/or and
`delete_filtered_out`, `apply_deletes`, picklists as label or value; event toggles and activity tables;
opt-out direction and field pairs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The only opt-out booleans a Campaign profile has (Adobe's integration was limited to these too).
CAMPAIGN_OPTOUT_FIELDS = frozenset(
    {
        "blackList",
        "blackListEmail",
        "blackListFax",
        "blackListMobile",
        "blackListPhone",
        "blackListPostalMail",
        "blackListPushnotification",
        "ccpaOptOut",
    }
)
EVENT_TYPES = ("send", "open", "click", "bounce")
CONTACT_TABLE = "contact"

_LOGICAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CAMPAIGN_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_CAMPAIGN_RESOURCE = re.compile(
    r"^(profileAndServicesExt|profileAndServices|customResources)/[A-Za-z][A-Za-z0-9]*$"
)

FieldType = Literal["Boolean", "Integer", "Decimal", "Double", "String", "DateTime", "Date"]
FilterOp = Literal["eq", "ne", "gt", "ge", "lt", "le", "in", "contains", "null", "not_null"]


class SyncConfigError(ValueError):
    """The sync configuration is invalid; the message lists every problem with its location."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _logical_name(value: str) -> str:
    if not _LOGICAL_NAME.match(value):
        raise ValueError(f"'{value}' is not a Dataverse logical name (lower case letters, digits, _)")
    return value


class KeyPair(_Strict):
    """The cross-system identifier: a Dynamics column (usually the primary id) ↔ a Campaign field."""

    d365: str = "contactid"
    acs: str = "externalId"
    # Campaign filter resource used to find a record by this key: GET <resource>/<acs_filter>?<acs>_parameter=
    acs_filter: str = "byExternalId"

    _d365 = field_validator("d365")(_logical_name)


class Link(_Strict):
    """A lookup column that Campaign resolves as a link: the column's value (the referenced row's id, which
    is the target mapping's key) goes to the field as is, and the resource's link `acs_field` joins that
    field on the target resource's key. `acs check` verifies the link exists; nothing else changes."""

    acs_field: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="the link's name in Campaign")
    target_mapping: str = Field(description="the mapping of the referenced table, e.g. contacts")


class FieldMapping(_Strict):
    d365: str
    acs: str = Field(description="Campaign field; nested paths with dots, e.g. location.city")
    apply_updates: bool = Field(True, description="off: written only on create, initial load or replay")
    type: FieldType | None = Field(None, description="target type; default from Dataverse metadata")
    picklist_values: Literal["label", "value"] | None = Field(None, description="default: the table's")
    link: Link | None = Field(None, description="a lookup to another mapping's table, joined in Campaign")

    _d365 = field_validator("d365")(_logical_name)

    @model_validator(mode="after")
    def _link_sends_the_key(self) -> FieldMapping:
        if self.link is not None and self.type not in (None, "String"):
            raise ValueError(f"field '{self.d365}': a link sends the referenced key as text, not {self.type}")
        return self

    @field_validator("acs")
    @classmethod
    def _acs_path(cls, value: str) -> str:
        if not _CAMPAIGN_PATH.match(value):
            raise ValueError(
                f"'{value}' is not a Campaign field path (name or dotted path like location.city)"
            )
        return value


class Replacement(_Strict):
    """Replace a Dynamics value before it is written (Adobe's 'F' for 1)."""

    field: str
    from_value: Any = Field(alias="from")
    to_value: Any = Field(alias="to")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FilterCondition(_Strict):
    field: str
    op: FilterOp
    value: Any = None

    _field = field_validator("field")(_logical_name)

    @model_validator(mode="after")
    def _value_fits_op(self) -> FilterCondition:
        if self.op in ("null", "not_null"):
            if self.value is not None:
                raise ValueError(f"filter on '{self.field}': op '{self.op}' takes no value")
        elif self.op == "in":
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"filter on '{self.field}': op 'in' needs a non-empty list")
        elif self.value is None:
            raise ValueError(
                f"filter on '{self.field}': op '{self.op}' needs a value (use 'null' to test for null)"
            )
        return self


class RecordFilter(_Strict):
    """Which Dynamics rows belong in Campaign: conditions combined with `and` or `or`."""

    combine: Literal["and", "or"] = "and"
    conditions: list[FilterCondition] = Field(min_length=1)
    delete_filtered_out: bool = Field(
        False, description="delete from Campaign a record that leaves the filter"
    )


class TableMapping(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$", description="unique id of this mapping")
    enabled: bool = True
    d365_table: str
    d365_entity_set: str | None = Field(None, description="default: read from Dataverse metadata")
    acs_resource: str = Field(
        description="e.g. profileAndServicesExt/profile or profileAndServicesExt/cusVehicle"
    )
    key: KeyPair = KeyPair()
    fields: list[FieldMapping] = Field(min_length=1)
    replacements: list[Replacement] = []
    filter: RecordFilter | None = None
    apply_deletes: bool = True
    picklist_values: Literal["label", "value"] = "label"

    _table = field_validator("d365_table")(_logical_name)

    @field_validator("acs_resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        if not _CAMPAIGN_RESOURCE.match(value):
            raise ValueError(
                f"'{value}' is not a Campaign resource path like profileAndServicesExt/profile, "
                "profileAndServicesExt/cusVehicle or customResources/cusFoo"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TableMapping:
        problems = []
        targets: dict[str, str] = {self.key.acs: self.key.d365}
        for field in self.fields:
            if field.acs in targets:
                problems.append(
                    f"Dynamics fields '{targets[field.acs]}' and '{field.d365}' both map to Campaign field "
                    f"'{field.acs}'"
                )
            else:
                targets[field.acs] = field.d365
            if any(
                field.acs.startswith(t + ".") or t.startswith(field.acs + ".")
                for t in targets
                if t != field.acs
            ):
                problems.append(f"Campaign field '{field.acs}' overlaps another mapped path")
        for field in self.fields:
            if field.link is not None and field.link.acs_field in targets:
                problems.append(f"link '{field.link.acs_field}' has the name of a mapped Campaign field")
        mapped = {f.d365 for f in self.fields} | {self.key.d365}
        for replacement in self.replacements:
            if replacement.field not in mapped:
                problems.append(f"replacement on '{replacement.field}', which is not a mapped Dynamics field")
        if problems:
            raise ValueError(f"mapping '{self.name}': " + "; ".join(problems))
        return self

    @property
    def is_custom_table(self) -> bool:
        return self.d365_table != CONTACT_TABLE


class ActivityTables(_Strict):
    """Logical names of the four activity tables (point them at Adobe's AppSource tables if installed)."""

    send: str = "acs_emailsend"
    open: str = "acs_emailopen"
    click: str = "acs_emailclick"
    bounce: str = "acs_emailbounce"

    _names = field_validator("send", "open", "click", "bounce")(_logical_name)


class EventsConfig(_Strict):
    send: bool = True
    open: bool = True
    click: bool = True
    bounce: bool = True
    activity_tables: ActivityTables = ActivityTables()
    follow_up_task_on_click: bool = False
    fix_address_task_on_bounce: bool = False
    owner_id: str | None = Field(None, description="systemuser id; default: the application user")

    @property
    def enabled_types(self) -> frozenset[str]:
        return frozenset(t for t in EVENT_TYPES if getattr(self, t))


class OptOutPair(_Strict):
    d365: str
    acs: str

    _d365 = field_validator("d365")(_logical_name)

    @field_validator("acs")
    @classmethod
    def _acs_optout(cls, value: str) -> str:
        if value not in CAMPAIGN_OPTOUT_FIELDS:
            raise ValueError(
                f"'{value}' is not a Campaign opt-out boolean; use one of {sorted(CAMPAIGN_OPTOUT_FIELDS)}"
            )
        return value


class OptOutConfig(_Strict):
    direction: Literal["disabled", "d365_to_acs", "acs_to_d365", "bidirectional"] = "disabled"
    pairs: list[OptOutPair] = []

    @model_validator(mode="after")
    def _pairs_unique(self) -> OptOutConfig:
        for side in ("d365", "acs"):
            names = [getattr(p, side) for p in self.pairs]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"opt-out: {side} field(s) {duplicates} paired more than once")
        if self.direction != "disabled" and not self.pairs:
            raise ValueError(f"opt-out: direction '{self.direction}' needs at least one field pair")
        return self


class Limits(_Strict):
    """Guards like Adobe's (20 custom tables × 50 columns); raise them deliberately if you need more."""

    max_custom_tables: int = Field(20, ge=1)
    max_columns: int = Field(50, ge=1)


class SyncConfig(_Strict):
    version: Literal[1] = 1
    tables: list[TableMapping] = Field(min_length=1)
    events: EventsConfig = EventsConfig()
    optout: OptOutConfig = OptOutConfig()
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _across_tables(self) -> SyncConfig:
        problems = []
        for attribute, side in (
            ("name", "mapping name"),
            ("d365_table", "Dynamics table"),
            ("acs_resource", "Campaign resource"),
        ):
            seen: dict[str, str] = {}
            for table in self.tables:
                value = getattr(table, attribute)
                if value in seen:
                    problems.append(
                        f"{side} '{value}' is mapped twice (mappings '{seen[value]}' and '{table.name}')"
                    )
                seen[value] = table.name
        custom = [t for t in self.tables if t.is_custom_table]
        if len(custom) > self.limits.max_custom_tables:
            problems.append(
                f"{len(custom)} custom tables mapped; the limit is {self.limits.max_custom_tables} "
                "(limits.max_custom_tables)"
            )
        for table in self.tables:
            if len(table.fields) > self.limits.max_columns:
                problems.append(
                    f"mapping '{table.name}' maps {len(table.fields)} columns; the limit is "
                    f"{self.limits.max_columns} (limits.max_columns)"
                )
        names = {table.name: table for table in self.tables}
        for table in self.tables:
            for field in table.fields:
                target = field.link.target_mapping if field.link else None
                if target is not None and (target not in names or target == table.name):
                    problems.append(
                        f"mapping '{table.name}', field '{field.d365}': link target_mapping '{target}' "
                        "is not another mapping of this config"
                    )
        contact = self.contact_mapping
        if self.optout.direction != "disabled":
            if contact is None:
                problems.append("opt-out sync needs a mapping of the Dynamics 'contact' table")
            else:
                mapped_acs = {f.acs for f in contact.fields}
                for pair in self.optout.pairs:
                    if pair.acs in mapped_acs:
                        problems.append(
                            f"Campaign field '{pair.acs}' is both an opt-out pair and a field of mapping "
                            f"'{contact.name}'; keep it in one place"
                        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def contact_mapping(self) -> TableMapping | None:
        return next((t for t in self.tables if t.d365_table == CONTACT_TABLE), None)

    def mapping(self, name: str) -> TableMapping:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"no table mapping named '{name}'")

    def mapping_for_table(self, d365_table: str) -> TableMapping | None:
        return next((t for t in self.tables if t.d365_table == d365_table and t.enabled), None)


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  - {where}: {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def parse_sync_config(data: str | bytes | dict, *, source: str = "sync config") -> SyncConfig:
    """Validate a sync configuration (JSON text or an already-parsed dict)."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise SyncConfigError(f"{source} is not valid JSON: {exc}") from exc
    try:
        return SyncConfig.model_validate(data)
    except ValidationError as exc:
        raise SyncConfigError(f"{source} is invalid:\n{_describe(exc)}") from exc


def load_sync_config(*, inline: str | None, path: str | Path, base_dir: Path | None = None) -> SyncConfig:
    """Load from inline JSON (app setting SYNC_CONFIG) if given, else from the file at `path`.

    A relative path is resolved against `base_dir` (the app root), since the Functions host's working
    directory is not guaranteed.
    """
    if inline and inline.strip():
        return parse_sync_config(inline, source="SYNC_CONFIG")
    file = Path(path)
    if not file.is_absolute():
        file = (base_dir or Path(__file__).resolve().parents[2]) / file
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SyncConfigError(f"SYNC_CONFIG_PATH: cannot read {file}: {exc.strerror}") from exc
    return parse_sync_config(text, source=str(file))
