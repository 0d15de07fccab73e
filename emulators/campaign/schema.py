"""Resource definitions (the profile and custom resources) and Campaign-like validation of written values.

Validation failures raise `DataError`; the HTTP layer renders them as Campaign's HTTP 500 data errors.
String lengths follow the `nms:recipient` schema closely enough to catch a client that does not truncate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

OPT_OUT_FLAGS = (
    "blackList",
    "blackListEmail",
    "blackListFax",
    "blackListMobile",
    "blackListPhone",
    "blackListPostalMail",
    "blackListPushnotification",
    "ccpaOptOut",
)


def opt_out_timestamp_field(flag: str) -> str:
    """The read-only timestamp Campaign bumps when `flag` changes (`blackList` is `blackListAll...`)."""
    return "blackListAllLastModified" if flag == "blackList" else f"{flag}LastModified"


CUSTOM_FIELD_PREFIX = "cus"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class DataError(Exception):
    """A write Campaign's engine refuses. `code` is the most specific Campaign code (XTK-/PGS-/RST-)."""

    def __init__(self, code: str, detail: str, *, status: int = 500) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # string | boolean | date | datetime | enumeration | long | double | link
    label: str = ""
    length: int | None = None
    values: tuple[str, ...] = ()
    policy: str | None = None  # "email": the value must look like an address
    read_only: bool = False
    target: str | None = None  # for links: the resource linked to

    @property
    def default(self) -> Any:
        if self.kind == "boolean":
            return False
        if self.kind in ("long", "double"):
            return 0
        if self.kind == "enumeration":
            return self.values[0]
        if self.kind == "link":
            return None
        return ""


@dataclass(frozen=True)
class Filter:
    """A `by<Name>` lookup. kinds: `equals` (field == parameter; emails compare case-insensitively),
    `text` (parameter contained in email or lastName), `since` (lastModified >= parameter)."""

    name: str
    kind: str
    param: str
    field: str | None = None


def custom_filter(name: str, field_name: str) -> Filter:
    """A filter defined in Campaign's UI: its parameter is named `<field>_parameter`."""
    return Filter(name, "equals", f"{field_name}_parameter", field_name)


@dataclass
class Resource:
    """A Campaign resource: its fields, the group fields (`location`), its identification key (unique when
    not empty) and its filters (`by<Name>` -> the field or kind of lookup)."""

    name: str
    label: str
    schema: str
    fields: dict[str, Field]
    groups: dict[str, dict[str, Field]] = field(default_factory=dict)
    key: str | None = None
    filters: dict[str, Filter] = field(default_factory=dict)
    linked: bool = True  # exposed under /profileAndServicesExt (else /customResources)
    accepts_custom_fields: bool = False  # the profile accepts any `cus*` field on the Ext endpoint
    links: dict[str, Field] = field(default_factory=dict)  # join links: described, not stored

    def writable(self, name: str) -> Field | None:
        spec = self.fields.get(name)
        return None if spec is None or spec.read_only else spec

    def defaults(self) -> dict[str, Any]:
        record = {name: spec.default for name, spec in self.fields.items() if name not in ("PKey", "href")}
        for group, members in self.groups.items():
            record[group] = {name: spec.default for name, spec in members.items()}
        return record

    def validate(self, body: Any, *, extended: bool) -> dict[str, Any]:
        """Check a POST/PATCH body and answer the values to store (read-only fields are ignored, as
        Campaign does). `extended`: the call came through /profileAndServicesExt."""
        if not isinstance(body, dict):
            raise DataError("XTK-170006", f"The body for resource '{self.name}' must be a JSON object.")
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name in self.groups:
                values[name] = self._validate_group(name, value)
                continue
            spec = self.fields.get(name)
            if spec is not None and not extended and name.startswith(CUSTOM_FIELD_PREFIX):
                raise self._unknown(name)  # extension fields exist only on /profileAndServicesExt
            if spec is None:
                if self.accepts_custom_fields and extended and name.startswith(CUSTOM_FIELD_PREFIX):
                    values[name] = _custom_value(name, value)
                    continue
                raise self._unknown(name)
            if not spec.read_only:
                values[name] = _checked(spec, value)
        return values

    def _validate_group(self, group: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise DataError("XTK-170006", f"Element '{group}' of resource '{self.name}' must be an object.")
        members = self.groups[group]
        checked = {}
        for name, member_value in value.items():
            spec = members.get(name)
            if spec is None:
                raise self._unknown(f"{group}/{name}")
            checked[name] = _checked(spec, member_value)
        return checked

    def _unknown(self, name: str) -> DataError:
        return DataError(
            "XTK-170036",
            f"Attribute '{name}' unknown (see definition of '{self.label} ({self.schema})' schema).",
        )


def _checked(spec: Field, value: Any) -> Any:
    if spec.kind == "link":
        if value is None:
            return None
        if isinstance(value, dict) and isinstance(value.get("PKey"), str):
            return value["PKey"]
        raise _bad_value(spec, value, 'a link is written as {"PKey": "..."}')
    if value is None:
        return spec.default
    if spec.kind in ("string", "enumeration", "date"):
        if not isinstance(value, str):
            raise _bad_value(spec, value, "text expected")
        if spec.kind == "enumeration" and value not in spec.values:
            raise DataError(
                "XTK-170006",
                f"The value '{value}' is not valid for the '{spec.name}' enumeration "
                f"of the '@{spec.name}' field",
            )
        if spec.kind == "date" and value:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise _bad_value(spec, value, "a date is written YYYY-MM-DD") from None
        if spec.policy == "email" and value and not _EMAIL.match(value):
            raise DataError("XTK-170006", f"Invalid email address '{value}' (field '@{spec.name}').")
        if spec.length is not None and len(value) > spec.length:
            raise DataError(
                "PGS-220000",
                f"PostgreSQL error: ERROR:  value too long for type character varying({spec.length})",
            )
        return value
    if spec.kind == "boolean":
        if not isinstance(value, bool):
            raise _bad_value(spec, value, "true or false expected")
        return value
    if spec.kind == "long":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_value(spec, value, "an integer expected")
        return value
    if spec.kind == "double":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_value(spec, value, "a number expected")
        return value
    raise AssertionError(f"unhandled field kind {spec.kind}")


def _custom_value(name: str, value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return "" if value is None else value
    raise DataError("XTK-170006", f"Unable to convert the value of field '@{name}': a scalar is expected.")


def _bad_value(spec: Field, value: Any, expected: str) -> DataError:
    shown = str(value)[:80]
    return DataError("XTK-170006", f"Invalid value '{shown}' for field '@{spec.name}' ({expected}).")


def _string(name: str, length: int, label: str = "", **kw: Any) -> Field:
    return Field(name, "string", label=label or name, length=length, **kw)


def profile_resource(extension: dict[str, str] | None = None) -> Resource:
    """The out-of-the-box profile (`nms:recipient`) plus the externalId identification key and the
    declared `cus*` extension fields (`{"cusTier": "string(20)"}`, types as in `custom_resource`)."""
    fields = [
        Field("PKey", "string", "Primary key", read_only=True),
        Field("href", "string", "URL", read_only=True),
        _string("email", 128, "Email", policy="email"),
        _string("firstName", 64, "First name"),
        _string("lastName", 64, "Last name"),
        _string("middleName", 30, "Middle name"),
        _string("salutation", 16, "Salutation"),
        Field("birthDate", "date", "Birth date"),
        Field("gender", "enumeration", "Gender", values=("unknown", "male", "female")),
        _string("phone", 32, "Phone"),
        _string("mobilePhone", 32, "Mobile phone"),
        _string("fax", 32, "Fax"),
        Field("emailFormat", "enumeration", "Email format", values=("unknown", "html", "text")),
        _string("preferredLanguage", 16, "Preferred language"),
        _string("externalId", 100, "External Resource ID"),
        _string("domain", 128, "Email domain", read_only=True),
        _string("title", 255, "Title", read_only=True),
        Field("created", "datetime", "Created", read_only=True),
        Field("lastModified", "datetime", "Last modified", read_only=True),
    ]
    for flag in OPT_OUT_FLAGS:
        fields.append(Field(flag, "boolean", flag))
        fields.append(
            Field(opt_out_timestamp_field(flag), "datetime", f"{flag} last modified", read_only=True)
        )
    for name, declared in (extension or {}).items():
        if not name.startswith(CUSTOM_FIELD_PREFIX):
            raise ValueError(f"profile extension field {name!r}: custom fields start with 'cus'")
        fields.append(declared_field(name, declared, owner="profile"))
    location = {
        **{f"address{i}": _string(f"address{i}", 80) for i in range(1, 5)},
        "city": _string("city", 50, "City"),
        "zipCode": _string("zipCode", 20, "Zip code"),
        "stateCode": _string("stateCode", 16, "State code"),
        "countryCode": _string("countryCode", 2, "Country code"),
    }
    return Resource(
        name="profile",
        label="Profiles",
        schema="nms:recipient",
        fields={f.name: f for f in fields},
        groups={"location": location},
        key="externalId",
        filters={
            "byEmail": Filter("byEmail", "equals", "email", "email"),
            "byText": Filter("byText", "text", "text"),
            # Customer-defined filters (Campaign UI), as the integration's instance would have them.
            "byExternalId": custom_filter("byExternalId", "externalId"),
            "byLastModifiedSince": Filter("byLastModifiedSince", "since", "since_parameter", "lastModified"),
        },
        accepts_custom_fields=True,
    )


DEFAULT_CUSTOM_RESOURCES: dict[str, dict[str, Any]] = {
    "cusVehicle": {
        "label": "Vehicles",
        "linked": True,
        "fields": {
            "externalId": "string(100)",
            "vehicleNumber": "string(32)",
            "vehicleName": "string(100)",
            "modelYear": "long",
            "purchaseDate": "date",
            "electric": "boolean",
            "profile": "link(profile)",
        },
        "key": "externalId",
        "filters": {"byExternalId": "externalId"},
    }
}

_TYPE = re.compile(r"^(string|boolean|date|datetime|long|double|link)(?:\((\w+)\))?$")


def declared_field(name: str, declared: str, *, owner: str) -> Field:
    """A field from its declaration: `string(100)`, `long`, `double`, `boolean`, `date`, `datetime`,
    `link(profile)` (a link stored as the target's PKey)."""
    match = _TYPE.match(declared)
    if match is None:
        raise ValueError(f"{owner}.{name}: unknown type {declared!r}")
    kind, argument = match.groups()
    if kind == "string":
        return _string(name, int(argument or 255))
    if kind == "link":
        return Field(name, "link", name, target=argument or "profile")
    return Field(name, kind, name)


def custom_resource(name: str, config: dict[str, Any]) -> Resource:
    """Build a custom resource from `{"fields": {name: "string(100)" | "long" | "link(profile)" | ...},
    "key": field, "filters": {"byX": field}, "linked": bool, "label": str, "links": {name: {"target":
    "profile", "join": {"<own field>": "<target field>"}}}}`. A join link is the way Adobe's integration
    links a child to its contact: the child stores the contact's external id and Campaign joins on it."""
    fields = [
        Field("PKey", "string", "Primary key", read_only=True),
        Field("href", "string", "URL", read_only=True),
        Field("created", "datetime", "Created", read_only=True),
        Field("lastModified", "datetime", "Last modified", read_only=True),
    ]
    fields += [declared_field(n, declared, owner=name) for n, declared in config.get("fields", {}).items()]
    declared_names = {f.name for f in fields}
    links = {}
    for link_name, link in config.get("links", {}).items():
        unknown = [own for own in link.get("join", {}) if own not in declared_names]
        if unknown:
            raise ValueError(f"{name}.{link_name}: the join uses undeclared field(s) {unknown}")
        links[link_name] = Field(link_name, "link", link_name, target=link["target"], read_only=True)
    return Resource(
        name=name,
        label=config.get("label", name),
        schema=f"cus:{name[3:4].lower()}{name[4:]}" if name.startswith("cus") else f"cus:{name}",
        fields={f.name: f for f in fields},
        key=config.get("key"),
        filters={key: custom_filter(key, target) for key, target in config.get("filters", {}).items()},
        linked=config.get("linked", True),
        links=links,
    )
