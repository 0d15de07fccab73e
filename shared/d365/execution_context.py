"""The Dataverse webhook body's data contract: the ``RemoteExecutionContext`` and the values it carries.

Dataverse serialises the context with WCF's DataContractJsonSerializer, hence the odd shape:
collections are arrays of ``{"key", "value"}`` pairs, typed values carry ``"__type": "<Name>:<namespace>"``
and dates are ``"/Date(<epoch ms>[+-hhmm])/"``. The models keep every key they do not know (``extra``).
"""

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Tag
from pydantic.alias_generators import to_pascal
from pydantic_core import PydanticCustomError

__all__ = [
    "Entity",
    "EntityImage",
    "EntityReference",
    "KeyValue",
    "Money",
    "OptionSetValue",
    "OptionSetValueCollection",
    "Reference",
    "RemoteExecutionContext",
    "parse_wcf_date",
    "to_plain",
]

_WCF_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_wcf_date(text: str) -> datetime:
    """``"/Date(1506409448000-0700)/"`` → aware UTC datetime; the number is UTC, the offset informational."""
    match = _WCF_DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a WCF JSON date: {text!r}")
    # Adding to the epoch (rather than fromtimestamp) is exact and handles pre-1970 birthdates everywhere.
    try:
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    except (OverflowError, ValueError):  # past year 1..9999, or more digits than int() takes
        raise ValueError(f"WCF JSON date out of range: {text[:40]!r}") from None


def _wcf_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _WCF_DATE.fullmatch(value):
        try:
            return parse_wcf_date(value)
        except ValueError:
            raise PydanticCustomError("wcf_date", "is a WCF JSON date out of range") from None
    raise PydanticCustomError("wcf_date", "is not a WCF JSON date like /Date(1506384247000)/")


def _guid(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise PydanticCustomError("guid", "is not a GUID") from None


def _key_value_pairs(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(item, dict) and "key" in item for item in value):
        return value
    raise PydanticCustomError("key_value_pairs", "must be an array of key/value pairs")


Guid = Annotated[str, BeforeValidator(_guid)]
WcfDate = Annotated[datetime, BeforeValidator(_wcf_datetime)]


class _Contract(BaseModel):
    """A WCF data contract: PascalCase keys on the wire, unknown keys (``__type`` included) kept."""

    model_config = ConfigDict(extra="allow", alias_generator=to_pascal, populate_by_name=True)


class EntityReference(_Contract):
    id: Guid
    logical_name: str | None = None
    name: str | None = None


class OptionSetValue(_Contract):
    value: int


class Money(_Contract):
    value: Decimal


class OptionSetValueCollection(_Contract):
    """Tolerated wrapper around a multi-select value (usually a bare array); its list key is unpublished."""

    @property
    def options(self) -> list[int]:
        return [
            item["Value"]
            for items in (self.model_extra or {}).values()
            if isinstance(items, list)
            for item in items
            if isinstance(item, dict) and isinstance(item.get("Value"), int)
        ]


class Entity(_Contract):
    logical_name: str | None = None
    id: Guid | None = None
    attributes: Annotated[list["KeyValue"], BeforeValidator(_key_value_pairs)] = []
    formatted_values: Annotated[list["KeyValue"], BeforeValidator(_key_value_pairs)] = []
    key_attributes: Annotated[list["KeyValue"], BeforeValidator(_key_value_pairs)] = []
    row_version: str | None = None
    entity_state: int | None = None
    # Keys here are Relationship objects, not strings: kept as sent.
    related_entities: Annotated[list[dict[str, Any]], BeforeValidator(_key_value_pairs)] = []

    def plain_attributes(self) -> dict[str, Any]:
        return {pair.key: to_plain(pair.value) for pair in self.attributes}

    def references(self) -> dict[str, "Reference"]:
        return {
            pair.key: Reference(pair.value.logical_name, pair.value.id, pair.value.name)
            for pair in self.attributes
            if isinstance(pair.value, EntityReference)
        }

    def formatted(self) -> dict[str, Any]:
        return {pair.key: pair.value for pair in self.formatted_values}


def _type_name(value: Any) -> str | None:
    """The contract name in ``__type`` (the part before ':'), whatever the namespace or its escaping."""
    type_ = value.get("__type") if isinstance(value, dict) else None
    return type_.split(":", 1)[0] if isinstance(type_, str) else None


def _value_kind(value: Any) -> str:
    if isinstance(value, dict):
        name = _type_name(value)
        if name in ("Entity", "EntityReference", "OptionSetValue", "Money", "OptionSetValueCollection"):
            return name
        if name is None and {"LogicalName", "Attributes"} <= value.keys():
            return "Entity"
    elif isinstance(value, list):
        if value and all(_type_name(item) == "OptionSetValue" for item in value):
            return "OptionSetValues"
    elif isinstance(value, str) and _WCF_DATE.fullmatch(value):
        return "WcfDate"
    return "other"


# A value inside a key/value pair: known contracts become models, anything else stays as sent.
TypedValue = Annotated[
    Annotated[Entity, Tag("Entity")]
    | Annotated[EntityReference, Tag("EntityReference")]
    | Annotated[OptionSetValue, Tag("OptionSetValue")]
    | Annotated[Money, Tag("Money")]
    | Annotated[OptionSetValueCollection, Tag("OptionSetValueCollection")]
    | Annotated[list[OptionSetValue], Tag("OptionSetValues")]
    | Annotated[WcfDate, Tag("WcfDate")]
    | Annotated[Any, Tag("other")],
    Discriminator(_value_kind),
]


class KeyValue(BaseModel):
    model_config = ConfigDict(extra="allow")

    key: str
    value: TypedValue = None


class EntityImage(BaseModel):
    """An image pair; its entity may lack ``__type``, so it is read as an Entity whatever it says."""

    model_config = ConfigDict(extra="allow")

    key: str
    value: Entity


KeyValuePairs = Annotated[list[KeyValue], BeforeValidator(_key_value_pairs)]
EntityImages = Annotated[list[EntityImage], BeforeValidator(_key_value_pairs)]


class RemoteExecutionContext(_Contract):
    message_name: str
    primary_entity_name: str
    primary_entity_id: Guid
    operation_id: str | None = None
    correlation_id: str | None = None
    request_id: str | None = None
    depth: int = 1
    mode: int | None = None
    stage: int | None = None
    operation_created_on: WcfDate | None = None
    organization_id: str | None = None
    organization_name: str | None = None
    user_id: str | None = None
    initiating_user_id: str | None = None
    business_unit_id: str | None = None
    owning_extension: EntityReference | None = None
    input_parameters: KeyValuePairs = []
    output_parameters: KeyValuePairs = []
    pre_entity_images: EntityImages = []
    post_entity_images: EntityImages = []
    shared_variables: KeyValuePairs = []
    parent_context: "RemoteExecutionContext | None" = None

    def input_parameter(self, key: str) -> Any:
        return next((pair.value for pair in self.input_parameters if pair.key == key), None)


Entity.model_rebuild()
RemoteExecutionContext.model_rebuild()


def to_plain(value: Any) -> Any:
    """A typed value as a plain Python value (a reference becomes the referenced id)."""
    if isinstance(value, EntityReference):
        return value.id
    if isinstance(value, OptionSetValue | Money):
        return value.value
    if isinstance(value, OptionSetValueCollection):
        return value.options
    if isinstance(value, Entity):
        return value.plain_attributes()
    if isinstance(value, list):
        return [to_plain(item) for item in value]
    return value


class Reference(NamedTuple):
    table: str | None
    id: str
    name: str | None
