"""What `acs check` verifies: does Campaign hold what the sync configuration needs? `check_mapping` and
`check_optout` are pure functions over parsed resource metadata (`shared.acs.metadata`) and the config;
`run_checks` reads the metadata of every mapped resource and probes the I/O Events journal (reads only:
the probe asks for the journal's end and saves no position).

Per mapping: the resource exists; the key field and every mapped field exist with a type that takes what
the mapping sends; the key filter exists (either spelling: `byExternalId`, or Campaign v8's name without
the prefix) and takes `<key>_parameter`; every declared link exists and points at the target mapping's
resource. For opt-outs: the paired flags exist (and their `…LastModified` timestamps for the two-way
rule), and the changed-since filter exists when Campaign's opt-outs flow to Dynamics.

Every problem names the Campaign screen and the step of docs/campaign-setup.md that fixes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.acs.client import CampaignClient, filter_path_name
from shared.acs.journal import JournalReader
from shared.acs.metadata import PARAMETER_SUFFIX, MetadataReader, ResourceMetadata
from shared.errors import AuthenticationError, NotFoundError, ServiceError
from shared.mapping.model import FieldMapping, SyncConfig, TableMapping

OK, WARNING, FAILED = "ok", "warning", "failed"
GUIDE = "docs/campaign-setup.md"

# Campaign field kind (`CampaignField.kind`) → the declared field types it stores as sent.
TAKES: dict[str, frozenset[str]] = {
    "string": frozenset({"String"}),
    "memo": frozenset({"String"}),
    "enumeration": frozenset({"String"}),
    "boolean": frozenset({"Boolean"}),
    "number": frozenset({"Integer", "Decimal", "Double"}),
    "date": frozenset({"Date"}),
    "datetime": frozenset({"DateTime", "Date"}),
}
NOT_VALUES = frozenset({"link", "collection", "item"})


@dataclass(frozen=True)
class Step:
    """Where an admin fixes a problem: the Campaign (or Adobe console) screen and the guide's section."""

    screen: str
    anchor: str

    def __str__(self) -> str:
        return f"{self.screen} ({GUIDE}#{self.anchor})"


CREDENTIAL = Step(
    "Developer Console > project > OAuth Server-to-Server credential", "1-developer-console-project"
)
ROLES = Step(
    "Admin Console > Campaign product profile of the technical account", "2-product-profiles-and-roles"
)
PROFILE = Step(
    "Administration > Development > Custom resources > Profile (extend): fields, identification key, "
    "filter definition",
    "3-extend-the-profile",
)
CHANGED_SINCE = Step(
    "Custom resources > Profile (extend) > Filter definition: byLastModifiedSince on lastModified",
    "4-the-bylastmodifiedsince-filter-opt-out-sync",
)
CUSTOM_RESOURCE = Step(
    "Administration > Development > Custom resources > the resource: fields, identification key, "
    "filter definition",
    "5-custom-resources",
)
LINK = Step(
    "Custom resources > the resource > Data structure > Links: link to Profile", "links-to-the-profile"
)
PUBLISH = Step("Administration > Development > Publication: Prepare publication, then Publish", "6-publish")
JOURNAL = Step(
    "Developer Console > project > Add event: Campaign email events, Journaling URL",
    "7-io-events-registration-and-journal-url",
)


@dataclass(frozen=True)
class Finding:
    level: str  # ok / warning / failed
    area: str  # a mapping name, opt-out, campaign, journal
    check: str  # what was checked: resource, field <path>, key <field>, filter <name>, link <name>, ...
    message: str
    fix: Step | None = None

    def to_json(self) -> dict[str, Any]:
        fix = {"screen": self.fix.screen, "guide": f"{GUIDE}#{self.fix.anchor}"} if self.fix else None
        return {
            "level": self.level,
            "area": self.area,
            "check": self.check,
            "message": self.message,
            "fix": fix,
        }


def _is_profile(mapping: TableMapping) -> bool:
    return mapping.acs_resource.split("/", 1)[1] == "profile"


def _definition_step(mapping: TableMapping) -> Step:
    return PROFILE if _is_profile(mapping) else CUSTOM_RESOURCE


def missing_resource(mapping: TableMapping) -> Finding:
    name = mapping.acs_resource.split("/", 1)[1]
    where = (
        "custom resources linked to the profile are served on profileAndServicesExt, unlinked ones on "
        "customResources"
        if name.startswith("cus")
        else "check the endpoint"
    )
    return Finding(
        FAILED,
        mapping.name,
        "resource",
        f"Campaign resource '{mapping.acs_resource}' not found ({where}); create it and publish",
        PUBLISH if _is_profile(mapping) else CUSTOM_RESOURCE,
    )


def check_mapping(mapping: TableMapping, metadata: ResourceMetadata, config: SyncConfig) -> list[Finding]:
    """Fields, key, key filter and links of one enabled mapping against its resource's metadata."""
    area = mapping.name
    findings = [
        Finding(OK, area, "resource", f"'{mapping.acs_resource}' found ({len(metadata.filters)} filter(s))")
    ]
    key = mapping.key
    if metadata.field(key.acs) is None:
        findings.append(
            Finding(
                FAILED,
                area,
                f"key {key.acs}",
                f"key field '{key.acs}' missing on '{mapping.acs_resource}': add it and make it the "
                "identification key, then publish",
                _definition_step(mapping),
            )
        )
    field_problems = [problem for field in mapping.fields for problem in _field(mapping, field, metadata)]
    findings += field_problems
    if not field_problems:
        findings.append(
            Finding(
                OK, area, "fields", f"{len(mapping.fields)} mapped field(s) present with compatible types"
            )
        )
    findings += _filter(
        area,
        metadata,
        key.acs_filter,
        f"{key.acs}{PARAMETER_SUFFIX}",
        what="key filter",
        fix=_definition_step(mapping),
    )
    for field in mapping.fields:
        if field.link is not None:
            findings.append(_link(mapping, field, metadata, config))
    return findings


def _field(mapping: TableMapping, field: FieldMapping, metadata: ResourceMetadata) -> list[Finding]:
    area, path = mapping.name, field.acs
    spec = metadata.field(path)
    if spec is None:
        hint = (
            "custom fields are named cus… and served only on profileAndServicesExt"
            if _is_profile(mapping)
            else "add it to the resource's data structure"
        )
        message = f"field '{path}' missing on '{mapping.acs_resource}' ({hint}); add it, then publish"
        return [Finding(FAILED, area, f"field {path}", message, _definition_step(mapping))]
    if spec.kind in NOT_VALUES:
        message = f"field '{path}' is a {spec.kind} in Campaign, not a value; map a value field"
        return [Finding(FAILED, area, f"field {path}", message, _definition_step(mapping))]
    sent = field.type or ("String" if field.link else None)  # a link's column is sent as the key text
    if sent is None or any(r.field == field.d365 for r in mapping.replacements):
        return []  # sent as read, or replaced per row: the type is decided by the data
    if spec.kind not in TAKES:
        return [
            Finding(WARNING, area, f"field {path}", f"Campaign type '{spec.kind}' of '{path}' not checked")
        ]
    if sent not in TAKES[spec.kind]:
        level = WARNING if spec.kind in ("string", "memo") else FAILED
        message = f"'{path}' is a Campaign {spec.kind} field; the mapping sends a {sent}"
        return [Finding(level, area, f"field {path}", message, _definition_step(mapping))]
    return []


def _filter(
    area: str, metadata: ResourceMetadata, name: str, parameter: str, *, what: str, fix: Step
) -> list[Finding]:
    name = filter_path_name(name)  # the name the integration calls
    match = metadata.find_filter(name)
    check = f"filter {name}"
    if match is None:
        message = (
            f"{what} '{name}' missing on '{metadata.resource}': define it (parameter {parameter}), "
            "then publish"
        )
        return [Finding(FAILED, area, check, message, fix)]
    found = match.filter
    if not found.takes(parameter):
        takes = ", ".join(sorted(found.parameters)) or "none"
        message = (
            f"{what} '{found.name}' takes {takes}; the integration sends {parameter} "
            f"(name the filter's parameter '{parameter.removesuffix(PARAMETER_SUFFIX)}')"
        )
        return [Finding(FAILED, area, check, message, fix)]
    if not match.exact:
        message = (
            f"{what} found as '{found.name}' (Campaign v8 names filters without the by prefix); the "
            f"integration calls '{name}': set the filter's 'Filter name in REST API' to {name}"
        )
        return [Finding(WARNING, area, check, message, fix)]
    return [Finding(OK, area, check, f"{what} '{name}' present, takes {parameter}")]


def _link(
    mapping: TableMapping, field: FieldMapping, metadata: ResourceMetadata, config: SyncConfig
) -> Finding:
    assert field.link is not None
    name = field.link.acs_field
    target = config.mapping(field.link.target_mapping).acs_resource.split("/", 1)[1]
    spec = metadata.field(name)
    check = f"link {name}"
    if spec is None or spec.kind != "link":
        found = "missing" if spec is None else f"a {spec.kind}, not a link"
        message = (
            f"link '{name}' to {target} is {found} on '{mapping.acs_resource}': create it as a join of "
            f"{field.acs} on {target}'s key, cardinality 0 or 1, then publish"
        )
        return Finding(FAILED, mapping.name, check, message, LINK)
    if spec.target != target:
        message = (
            f"link '{name}' points at '{spec.target}'; mapping '{field.link.target_mapping}' is '{target}'"
        )
        return Finding(FAILED, mapping.name, check, message, LINK)
    return Finding(OK, mapping.name, check, f"link '{name}' → {target} present (joined on {field.acs})")


def check_optout(
    config: SyncConfig,
    direction: str,
    metadata: ResourceMetadata,
    *,
    changed_since_filter: str,
    timestamp_field: Callable[[str], str],
) -> list[Finding]:
    """The opt-out flags (and their timestamps for the two-way rule) and the changed-since filter."""
    if direction == "disabled":
        return []
    area, findings = "opt-out", []
    needed = [(pair.acs, "boolean") for pair in config.optout.pairs]
    if direction == "bidirectional":
        needed += [(timestamp_field(pair.acs), "datetime") for pair in config.optout.pairs]
    for path, kind in needed:
        spec = metadata.field(path)
        if spec is None or spec.kind != kind:
            found = "missing" if spec is None else f"a {spec.kind}"
            message = (
                f"opt-out field '{path}' is {found} on '{metadata.resource}' (newer instances name the flags "
                "denyList…: use the names the profile's metadata shows in optout.pairs)"
            )
            findings.append(Finding(FAILED, area, f"field {path}", message, CHANGED_SINCE))
    if direction in ("acs_to_d365", "bidirectional"):
        findings += _filter(
            area,
            metadata,
            changed_since_filter,
            f"since{PARAMETER_SUFFIX}",
            what="changed-since filter",
            fix=CHANGED_SINCE,
        )
    if not any(f.level == FAILED for f in findings):
        findings.insert(
            0,
            Finding(OK, area, "fields", f"direction {direction}: {len(config.optout.pairs)} flag(s) present"),
        )
    return findings


def run_checks(
    config: SyncConfig,
    *,
    campaign: CampaignClient,
    journal: JournalReader | None,
    optout_direction: str,
    changed_since_filter: str,
    events_push_enabled: bool,
    timestamp_field: Callable[[str], str],
) -> list[Finding]:
    """Every finding, in order: per enabled mapping, then opt-outs, then the journal (None: not set).

    :param timestamp_field: the opt-out flag → timestamp field naming rule of the opt-out flow.
    """
    reader = MetadataReader(campaign)
    findings: list[Finding] = []
    read: dict[str, ResourceMetadata] = {}
    for mapping in config.tables:
        if not mapping.enabled:
            findings.append(Finding(OK, mapping.name, "mapping", "disabled: not checked"))
            continue
        try:
            read[mapping.acs_resource] = metadata = reader.read(mapping.acs_resource)
        except NotFoundError:
            findings.append(missing_resource(mapping))
            continue
        except AuthenticationError as exc:
            return [*findings, _credentials(exc)]
        except ServiceError as exc:
            message = f"metadata not readable: {_brief(exc)}"
            findings.append(Finding(FAILED, mapping.name, "resource", message))
            continue
        findings += check_mapping(mapping, metadata, config)
    contact = config.contact_mapping
    if contact is not None and contact.acs_resource in read:
        findings += check_optout(
            config,
            optout_direction,
            read[contact.acs_resource],
            changed_since_filter=changed_since_filter,
            timestamp_field=timestamp_field,
        )
    findings.append(_journal(journal, events_push_enabled))
    return findings


def _brief(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _credentials(exc: AuthenticationError) -> Finding:
    if exc.status == 403:
        message = f"Campaign refuses the technical account ({_brief(exc)}): give it a product profile"
        return Finding(FAILED, "campaign", "credentials", message, ROLES)
    return Finding(FAILED, "campaign", "credentials", f"credentials rejected: {_brief(exc)}", CREDENTIAL)


def _journal(journal: JournalReader | None, events_push_enabled: bool) -> Finding:
    if journal is None:
        if not events_push_enabled:
            return Finding(OK, "journal", "journal", "events_push is off: not checked")
        message = "ACS_EVENTS_JOURNAL_URL and ACS_IMS_ORG_ID are not set; events_push needs them"
        return Finding(FAILED, "journal", "journal", message, JOURNAL)
    try:
        next(journal.iter_batches(latest=True), None)  # the end of the journal: nothing consumed
    except AuthenticationError as exc:
        message = (
            f"the journal refuses the credentials ({_brief(exc)}): add the I/O Events API and the email "
            "events registration to the credential's project; check ACS_IMS_ORG_ID"
        )
        return Finding(FAILED, "journal", "journal", message, JOURNAL)
    except NotFoundError:
        message = "journal URL not found: copy the registration's Journaling URL to ACS_EVENTS_JOURNAL_URL"
        return Finding(FAILED, "journal", "journal", message, JOURNAL)
    except ServiceError as exc:
        return Finding(FAILED, "journal", "journal", f"journal not reachable: {_brief(exc)}", JOURNAL)
    return Finding(OK, "journal", "journal", "reachable with the given credentials")
