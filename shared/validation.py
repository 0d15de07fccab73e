"""`validate-config`: check the app settings, the sync configuration and what they point at, before a
deployment or after a change, without writing anything.

Live checks: the state storage answers; Dynamics and Campaign accept the credentials; every mapped
Dynamics table and column exists, change tracking is on and the activity tables are in place (through
`D365Setup.plan()`, which only reads); every mapped Campaign field exists with a type that takes what
the mapping sends (from `GET <endpoint>/resourceType/<name>`); the Campaign key filter answers (called
with a value no record has); the opt-out columns and fields exist.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from shared.d365.metadata import AttributeMetadata, TableMetadata
from shared.errors import AuthenticationError, NotFoundError, ServiceError
from shared.mapping.engine import PICKLIST_TYPES, ColumnInfo, default_type
from shared.mapping.model import FieldMapping, TableMapping
from shared.setup.d365 import D365Setup

if TYPE_CHECKING:
    from shared.app import App

OK, WARNING, FAILED = "ok", "warning", "failed"
PROBE_VALUE = "validate-config-probe-no-such-record"
SETUP_HINT = "run `python -m shared.cli d365 setup`"

# Dynamics column types a declared conversion can read (text columns are converted at run time).
_TEXT_COLUMNS = frozenset({"String", "Memo"})
_NUMERIC_COLUMNS = frozenset({"Integer", "BigInt", "Decimal", "Money", "Double"})
_READS = {
    "Boolean": frozenset({"Boolean", "Integer", "BigInt"}),
    "Integer": _NUMERIC_COLUMNS | PICKLIST_TYPES - {"MultiSelectPicklist"},
    "Decimal": _NUMERIC_COLUMNS,
    "Double": _NUMERIC_COLUMNS,
    "DateTime": frozenset({"DateTime"}),
    "Date": frozenset({"DateTime"}),
}
# Campaign field type → the value kinds it stores as sent.
_CAMPAIGN_NUMBERS = frozenset(
    {"number", "long", "int64", "int32", "short", "byte", "double", "float", "decimal"}
)
_TAKES = {
    "string": frozenset({"String"}),
    "memo": frozenset({"String"}),
    "enumeration": frozenset({"String"}),
    "boolean": frozenset({"Boolean"}),
    "number": frozenset({"Integer", "Decimal", "Double"}),
    "date": frozenset({"Date"}),
    "datetime": frozenset({"DateTime", "Date"}),
}


def _brief(exc: Exception) -> str:
    """An error on one line (service messages may span several)."""
    return " ".join(str(exc).split())


@dataclass(frozen=True)
class Check:
    level: str  # ok / warning / failed
    area: str  # settings, sync config, storage, dynamics, campaign, a mapping name, events, opt-out
    message: str


def _campaign_type(spec: dict[str, Any]) -> str:
    kind = str(spec.get("type") or "").lower()
    res_type = str(spec.get("resType") or "").lower()
    if kind in _CAMPAIGN_NUMBERS or res_type in _CAMPAIGN_NUMBERS:
        return "number"
    if spec.get("values") and kind == "string":
        return "enumeration"
    return kind


def _campaign_field(description: dict[str, Any], path: str) -> dict[str, Any] | None:
    """A field of a `resourceType` description by path (`location.city` is inside the `location` item)."""
    content = description.get("content") or {}
    spec: Any = None
    for part in path.split("."):
        spec = content.get(part) if isinstance(content, dict) else None
        if spec is None:
            return None
        content = spec.get("content")
    return spec


def _sent_kind(field: FieldMapping, column: AttributeMetadata | None, style: str) -> str | None:
    """What the mapping engine sends for this field: a conversion kind, or None for a value sent as read."""
    if field.type is not None:
        return field.type
    if column is None:
        return None
    if column.type in PICKLIST_TYPES:
        if (field.picklist_values or style) == "label":
            return "String"
        return None if column.type == "MultiSelectPicklist" else "Integer"  # the option's number
    return default_type(ColumnInfo(column.type))


class ConfigValidator:
    """Runs the checks in order; later checks are skipped when what they need failed."""

    def __init__(self, app_factory: Callable[[], App]) -> None:
        self._app_factory = app_factory

    def run(self) -> Iterator[Check]:
        try:
            app = self._app_factory()
            settings = app.settings
        except ValueError as exc:
            yield Check(FAILED, "settings", str(exc))
            return
        yield Check(
            OK, "settings", f"Dynamics {settings.d365_org_url}, Campaign {settings.campaign_base_url}"
        )
        try:
            config = app.config
        except ValueError as exc:
            yield Check(FAILED, "sync config", str(exc))
            return
        tables = ", ".join(f"{t.name} ({t.d365_table} → {t.acs_resource})" for t in config.tables)
        yield Check(OK, "sync config", f"{len(config.tables)} table mapping(s): {tables}")
        yield self._storage(app)
        dynamics = self._dynamics_credentials(app)
        campaign = self._campaign_credentials(app)
        yield dynamics
        yield campaign
        if dynamics.level == OK:
            yield from self._dynamics_setup(app)
        for mapping in config.tables:
            if not mapping.enabled:
                yield Check(OK, mapping.name, "disabled: not checked")
                continue
            metadata = None
            if dynamics.level == OK:
                metadata, checks = self._dynamics_table(app, mapping)
                yield from checks
            if campaign.level == OK:
                yield from self._campaign_resource(app, mapping, metadata)
        if app.optout_reconciler.enabled:
            yield from self._optout(app, dynamics.level == OK, campaign.level == OK)

    # -- connections -------------------------------------------------------------------------------

    @staticmethod
    def _storage(app: App) -> Check:
        try:
            list(itertools.islice(app.store.checkpoints.list(), 1))
            app.store.deadletters.count(flow="validate-config")
        except (AzureError, ValueError) as exc:
            return Check(FAILED, "storage", f"state storage does not answer: {_brief(exc)}")
        return Check(OK, "storage", "state tables and container answer")

    @staticmethod
    def _dynamics_credentials(app: App) -> Check:
        try:
            who = app.dataverse.pipeline.request("GET", "WhoAmI").json()
        except AuthenticationError as exc:
            return Check(FAILED, "dynamics", f"credentials rejected: {_brief(exc)}")
        except ServiceError as exc:
            return Check(FAILED, "dynamics", f"does not answer: {_brief(exc)}")
        return Check(OK, "dynamics", f"credentials accepted (application user {who.get('UserId')})")

    @staticmethod
    def _campaign_credentials(app: App) -> Check:
        try:
            app.campaign.find_by(
                "profileAndServicesExt/profile", "byEmail", {"email": PROBE_VALUE}, custom=False, line_count=1
            )
        except AuthenticationError as exc:
            return Check(FAILED, "campaign", f"credentials rejected: {_brief(exc)}")
        except ServiceError as exc:
            return Check(FAILED, "campaign", f"does not answer: {_brief(exc)}")
        return Check(OK, "campaign", "credentials accepted")

    # -- Dynamics ------------------------------------------------------------------------------------

    @staticmethod
    def _dynamics_setup(app: App) -> Iterator[Check]:
        """Change tracking and the activity tables, as `d365 setup` sees them (its plan only reads)."""
        setup = D365Setup(
            dataverse=app.dataverse, config=app.config, optout_direction=app.settings.optout_direction
        )
        missing: Counter[str] = Counter()  # activity-table parts to create: table / column / key
        tables: set[str] = set()
        for action in setup.plan():
            area = "dynamics" if action.target.startswith("change tracking") else "events"
            if action.verb == "skip":
                continue
            if action.changes and area == "events":
                kind, name = action.target.split(" ", 1)
                missing[kind] += 1
                tables.add(name.split(".")[0])
            elif action.changes:
                yield Check(
                    FAILED, area, f"{action.target} needs `{action.verb}`: {action.detail}; {SETUP_HINT}"
                )
            elif action.verb == "warning":
                yield Check(WARNING, area, f"{action.target}: {action.detail}")
            else:
                yield Check(OK, area, action.target + (f": {action.detail}" if action.detail else ""))
        if missing:
            parts = ", ".join(
                f"{missing[kind]} {kind}(s)" for kind in ("table", "column", "key") if missing[kind]
            )
            yield Check(
                FAILED if app.settings.events_push_enabled else WARNING,
                "events",
                f"activity tables not ready: {parts} to create in {', '.join(sorted(tables))}; {SETUP_HINT}",
            )

    @staticmethod
    def _dynamics_table(app: App, mapping: TableMapping) -> tuple[TableMetadata | None, list[Check]]:
        area, table = mapping.name, mapping.d365_table
        try:
            metadata = app.dataverse.metadata.table_metadata(table)
        except NotFoundError:
            return None, [Check(FAILED, area, f"Dynamics table '{table}' does not exist")]
        except ServiceError as exc:
            problem = f"Dynamics table '{table}': metadata not readable: {_brief(exc)}"
            return None, [Check(FAILED, area, problem)]
        checks = []
        if mapping.d365_entity_set and mapping.d365_entity_set != metadata.entity_set_name:
            checks.append(
                Check(
                    FAILED,
                    area,
                    f"d365_entity_set '{mapping.d365_entity_set}' is not the entity set of '{table}' "
                    f"('{metadata.entity_set_name}')",
                )
            )
        columns = {mapping.key.d365: "the key"}
        columns.update({f.d365: f"→ {f.acs}" for f in mapping.fields})
        if mapping.filter:
            columns.update(
                {c.field: "the filter" for c in mapping.filter.conditions if c.field not in columns}
            )
        missing = [f"{name} ({use})" for name, use in columns.items() if name not in metadata.attributes]
        if missing:
            checks.append(
                Check(FAILED, area, f"columns missing on Dynamics table '{table}': {', '.join(missing)}")
            )
        for field in mapping.fields:
            column = metadata.attributes.get(field.d365)
            if column is None or field.type is None:
                continue
            if column.type in _TEXT_COLUMNS and field.type != "String":
                checks.append(
                    Check(
                        WARNING,
                        area,
                        f"{field.d365} is text, converted to {field.type} at run time: rows with other "
                        "text are dead-lettered",
                    )
                )
            elif field.type != "String" and column.type not in _READS[field.type]:
                checks.append(
                    Check(
                        FAILED, area, f"{field.d365} is {column.type}: it cannot be converted to {field.type}"
                    )
                )
        if not missing:
            checks.append(Check(OK, area, f"Dynamics table '{table}': {len(columns)} column(s) found"))
        return metadata, checks

    # -- Campaign ------------------------------------------------------------------------------------

    def _campaign_resource(
        self, app: App, mapping: TableMapping, metadata: TableMetadata | None
    ) -> Iterator[Check]:
        area, resource = mapping.name, mapping.acs_resource
        endpoint, name = resource.split("/", 1)
        try:
            description = app.campaign.pipeline.request("GET", f"{endpoint}/resourceType/{name}").json()
        except NotFoundError:
            yield Check(FAILED, area, f"Campaign resource '{resource}' does not exist")
            return
        except ServiceError as exc:
            problem = f"Campaign resource '{resource}': no description ({_brief(exc)}); fields not checked"
            yield Check(WARNING, area, problem)
            description = None
        if description is not None:
            yield from self._campaign_fields(mapping, description, metadata)
        yield self._key_filter(app, mapping)

    @staticmethod
    def _campaign_fields(
        mapping: TableMapping, description: dict[str, Any], metadata: TableMetadata | None
    ) -> Iterator[Check]:
        area, resource = mapping.name, mapping.acs_resource
        missing = []
        problems = []
        targets = [(mapping.key.acs, None), *((f.acs, f) for f in mapping.fields)]
        for path, field in targets:
            spec = _campaign_field(description, path)
            if spec is None:
                missing.append(path)
                continue
            if field is None:
                continue
            kind = _sent_kind(
                field, metadata.attributes.get(field.d365) if metadata else None, mapping.picklist_values
            )
            campaign_type = _campaign_type(spec)
            if any(r.field == field.d365 for r in mapping.replacements):
                continue  # replaced values: their type is decided per row
            if kind is None and (metadata is None or field.d365 not in metadata.attributes):
                continue  # the Dynamics column's type is unknown (not reachable, or reported missing)
            if campaign_type in ("link", "item"):
                problems.append(
                    Check(FAILED, area, f"Campaign field '{path}' is a {campaign_type}, not a value")
                )
            elif kind is None:
                problems.append(
                    Check(
                        WARNING, area, f"{field.d365} → {path}: sent unconverted (no conversion for its type)"
                    )
                )
            elif campaign_type not in _TAKES:
                problems.append(
                    Check(WARNING, area, f"Campaign field '{path}' has type '{campaign_type}': not checked")
                )
            elif kind not in _TAKES[campaign_type]:
                level = WARNING if campaign_type in ("string", "memo") else FAILED
                problems.append(
                    Check(
                        level,
                        area,
                        f"{field.d365} → {path}: a {kind} value into a Campaign {campaign_type} field",
                    )
                )
        if missing:
            yield Check(
                FAILED,
                area,
                f"fields missing on Campaign resource '{resource}': {', '.join(missing)} "
                "(custom fields need the cus prefix and the profileAndServicesExt endpoint)",
            )
        yield from problems
        if not missing:
            yield Check(OK, area, f"Campaign resource '{resource}': {len(targets)} field(s) found")

    @staticmethod
    def _key_filter(app: App, mapping: TableMapping) -> Check:
        key, resource = mapping.key, mapping.acs_resource
        try:
            app.campaign.find_by(resource, key.acs_filter, {key.acs: PROBE_VALUE}, line_count=1)
        except ServiceError as exc:
            return Check(
                FAILED,
                mapping.name,
                f"Campaign key filter {key.acs_filter} (parameter {key.acs}_parameter) does not answer: "
                f"{_brief(exc)}; define it on {resource} in Campaign",
            )
        return Check(OK, mapping.name, f"Campaign key filter {key.acs_filter} answers")

    # -- opt-out -----------------------------------------------------------------------------------

    @staticmethod
    def _optout(app: App, dynamics_ok: bool, campaign_ok: bool) -> Iterator[Check]:
        reconciler = app.optout_reconciler
        pairs = reconciler.pairs
        problems: list[str] = []
        if dynamics_ok:
            try:
                columns = app.dataverse.metadata.table_metadata("contact").attributes
            except ServiceError as exc:
                problems.append(f"contact metadata not readable: {_brief(exc)}")
                columns = {}
            for pair in pairs if columns else ():
                column = columns.get(pair.d365)
                if column is None:
                    problems.append(f"contact column '{pair.d365}' does not exist")
                elif column.type != "Boolean":
                    problems.append(f"contact column '{pair.d365}' is {column.type}, not Boolean")
        if campaign_ok:
            endpoint, name = reconciler.resource.split("/", 1)
            try:
                description = app.campaign.pipeline.request("GET", f"{endpoint}/resourceType/{name}").json()
            except ServiceError as exc:
                problems.append(f"no description of {reconciler.resource}: {_brief(exc)}")
                description = {}
            missing = [p.acs for p in pairs if description and _campaign_field(description, p.acs) is None]
            if missing:
                problems.append(
                    f"Campaign fields missing: {', '.join(missing)} (newer instances say denyList*)"
                )
            if reconciler.direction in ("acs_to_d365", "bidirectional"):
                filter_name = app.settings.acs_changed_since_filter
                try:
                    pages = reconciler.campaign.iter_changed_since(
                        reconciler.resource, datetime.now(UTC), filter_name=filter_name, line_count=1
                    )
                    next(pages, None)
                except ServiceError as exc:
                    problems.append(
                        f"Campaign filter {filter_name} does not answer ({_brief(exc)}): "
                        "define it on lastModified"
                    )
        for problem in problems:
            yield Check(FAILED, "opt-out", problem)
        if not problems:
            yield Check(
                OK, "opt-out", f"direction {reconciler.direction}: {len(pairs)} field pair(s) in place"
            )
