"""`validate-config`: check the app settings, the sync configuration and what they point at, before a
deployment or after a change, without writing anything.

Live checks: the state storage answers; Dynamics and Campaign accept the credentials; every mapped
Dynamics table and column exists, change tracking is on and the activity tables are in place (through
`D365Setup.plan()`, which only reads); the opt-out columns exist. The Campaign side is `acs check`
(`shared.acs.check`: resources, fields, key filters, links, opt-out fields and filter, the journal),
plus what needs both sides: a Campaign field's type against what the Dynamics column's type sends.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from shared.acs.check import NOT_VALUES, TAKES, Finding, run_checks
from shared.acs.journal import JournalReader
from shared.acs.metadata import MetadataReader
from shared.d365.metadata import AttributeMetadata, TableMetadata
from shared.errors import AuthenticationError, NotFoundError, ServiceError
from shared.flows.optout import timestamp_field
from shared.http import RetryPolicy
from shared.mapping.engine import PICKLIST_TYPES, ColumnInfo, default_type
from shared.mapping.model import FieldMapping, TableMapping
from shared.setup.activities import SETUP_HINT
from shared.setup.d365 import D365Setup

if TYPE_CHECKING:
    from shared.app import App

OK, WARNING, FAILED = "ok", "warning", "failed"
PROBE_VALUE = "validate-config-probe-no-such-record"

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
# The journal probe of `acs check`: fail fast rather than wait out the journal's retry hints.
_PROBE_TIMEOUT = (3.0, 10.0)
_PROBE_RETRY = RetryPolicy(total=1, backoff_factor=0.2, backoff_max=1.0, retry_after_max=2.0)


def _brief(exc: Exception) -> str:
    """An error on one line (service messages may span several)."""
    return " ".join(str(exc).split())


@dataclass(frozen=True)
class Check:
    level: str  # ok / warning / failed
    area: str  # settings, sync config, storage, dynamics, campaign, a mapping name, events, opt-out
    message: str


def campaign_findings(app: App) -> list[Finding]:
    """`acs check` for the app's sync config and settings (reads only)."""
    s = app.settings
    journal = None
    if s.acs_events_journal_url and s.acs_ims_org_id:
        journal = JournalReader(
            journal_url=s.acs_events_journal_url,
            client_id=s.acs_client_id,
            org_id=s.acs_ims_org_id,
            token_provider=app.ims,
            limit=1,
            timeout=_PROBE_TIMEOUT,
            retry=_PROBE_RETRY,
        )
    return run_checks(
        app.config,
        campaign=app.campaign,
        journal=journal,
        optout_direction=s.optout_direction or app.config.optout.direction,
        changed_since_filter=s.acs_changed_since_filter,
        events_push_enabled=s.events_push_enabled,
        timestamp_field=timestamp_field,
    )


def _from_finding(finding: Finding) -> Check:
    fix = f"\nfix: {finding.fix}" if finding.fix is not None and finding.level != OK else ""
    return Check(finding.level, finding.area, f"{finding.check}: {finding.message}{fix}")


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
        findings: dict[str, list[Finding]] = {}
        for finding in campaign_findings(app) if campaign.level == OK else ():
            findings.setdefault(finding.area, []).append(finding)
        for mapping in config.tables:
            if not mapping.enabled:
                findings.pop(mapping.name, None)
                yield Check(OK, mapping.name, "disabled: not checked")
                continue
            metadata = None
            if dynamics.level == OK:
                metadata, checks = self._dynamics_table(app, mapping)
                yield from checks
            yield from map(_from_finding, findings.pop(mapping.name, []))
            if campaign.level == OK and metadata is not None:
                yield from self._campaign_types(app, mapping, metadata)
        if app.optout_reconciler.enabled and dynamics.level == OK:
            yield from self._optout_columns(app)
        for rest in findings.values():  # opt-out, journal, campaign
            yield from map(_from_finding, rest)

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

    # -- both sides --------------------------------------------------------------------------------

    @staticmethod
    def _campaign_types(app: App, mapping: TableMapping, metadata: TableMetadata) -> Iterator[Check]:
        """What the Dynamics column's type makes the mapping send, against the Campaign field's type
        (fields with a declared type, and missing fields, are `acs check`'s)."""
        try:
            campaign = MetadataReader(app.campaign).read(mapping.acs_resource)
        except ServiceError:
            return  # reported by `acs check`
        area = mapping.name
        for field in mapping.fields:
            spec = campaign.field(field.acs)
            column = metadata.attributes.get(field.d365)
            if field.type is not None or spec is None or column is None or spec.kind in NOT_VALUES:
                continue
            if any(r.field == field.d365 for r in mapping.replacements):
                continue  # replaced values: their type is decided per row
            kind = _sent_kind(field, column, mapping.picklist_values)
            if kind is None:
                message = f"{field.d365} → {field.acs}: sent unconverted (no conversion for its type)"
                yield Check(WARNING, area, message)
            elif spec.kind in TAKES and kind not in TAKES[spec.kind]:
                level = WARNING if spec.kind in ("string", "memo") else FAILED
                message = f"{field.d365} → {field.acs}: a {kind} value into a Campaign {spec.kind} field"
                yield Check(level, area, message)

    # -- opt-out -----------------------------------------------------------------------------------

    @staticmethod
    def _optout_columns(app: App) -> Iterator[Check]:
        """The Dynamics side of the opt-out pairs (the Campaign side is `acs check`'s)."""
        reconciler = app.optout_reconciler
        problems: list[str] = []
        try:
            columns = app.dataverse.metadata.table_metadata("contact").attributes
        except ServiceError as exc:
            problems.append(f"contact metadata not readable: {_brief(exc)}")
            columns = {}
        for pair in reconciler.pairs if columns else ():
            column = columns.get(pair.d365)
            if column is None:
                problems.append(f"contact column '{pair.d365}' does not exist")
            elif column.type != "Boolean":
                problems.append(f"contact column '{pair.d365}' is {column.type}, not Boolean")
        for problem in problems:
            yield Check(FAILED, "opt-out", problem)
        if not problems:
            message = f"direction {reconciler.direction}: {len(reconciler.pairs)} contact column(s) in place"
            yield Check(OK, "opt-out", message)
