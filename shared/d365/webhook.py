"""Dataverse webhook bodies (the ``RemoteExecutionContext``) and their normalisation to a ``ChangeRecord``.

Dataverse serialises the context with WCF's DataContractJsonSerializer, hence the odd shape:
collections are arrays of ``{"key", "value"}`` pairs, typed values carry ``"__type": "<Name>:<namespace>"``
and dates are ``"/Date(<epoch ms>[+-hhmm])/"``. The models keep every key they do not know (``extra``).
"""

import itertools
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Tag, ValidationError
from pydantic.alias_generators import to_pascal
from pydantic_core import PydanticCustomError

__all__ = [
    "ChangeRecord",
    "Entity",
    "EntityImage",
    "EntityReference",
    "KeyValue",
    "Money",
    "OptionSetValue",
    "OptionSetValueCollection",
    "Reference",
    "RemoteExecutionContext",
    "WebhookPayloadError",
    "load_context",
    "parse",
    "parse_wcf_date",
    "to_plain",
]

SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"
CORRELATION_HEADER = "x-ms-correlation-request-id"

_WCF_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")
# Nesting of arrays/objects a body may have. A published async Update nests 8 levels (context → Target →
# Attributes → EntityReference → KeyAttributes); each ParentContext adds 1 and each RelatedEntities level ~5,
# so a few of each stay far below 64, while a hostile `[[[[…` body is refused before the recursive JSON
# parser (and the validator) ever see it.
MAX_NESTING = 64
# A JSON string (escapes included; an unterminated one runs to the end): written so it never backtracks,
# whatever the input.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# How much of the validation errors a 400 answer repeats (it is also logged).
_MAX_PROBLEMS = 10
_MAX_PROBLEM_CHARS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Validation errors whose message is phrased to follow the field name ("PrimaryEntityId is not a GUID").
_OWN_ERRORS = frozenset({"guid", "wcf_date", "key_value_pairs"})


class WebhookPayloadError(ValueError):
    """The body is not a Dataverse ``RemoteExecutionContext`` this module can read."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeRecord:
    """One row change as Dataverse announced it, in plain Python values.

    ``attributes`` is what the Target carried (an Update's changed columns plus system columns), never
    merged with the images. ``size_exceeded`` means the body does not carry the row's columns: re-read the
    row by ``table`` + ``id``.
    """

    message: str
    table: str
    id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    references: dict[str, Reference] = field(default_factory=dict)
    formatted: dict[str, Any] = field(default_factory=dict)
    row_version: str | None = None
    operation_id: str | None = None
    correlation_id: str | None = None
    request_id: str | None = None
    depth: int = 1
    mode: int | None = None
    stage: int | None = None
    operation_created_on: datetime | None = None
    organization_name: str | None = None
    initiating_user_id: str | None = None
    size_exceeded: bool = False
    post_image: dict[str, Any] = field(default_factory=dict)
    pre_image: dict[str, Any] = field(default_factory=dict)


def load_context(body: bytes | str | Mapping[str, Any]) -> RemoteExecutionContext:
    """Validate a webhook body into the context model; raises ``WebhookPayloadError``."""
    data = _decode(body)
    try:
        return RemoteExecutionContext.model_validate(data)
    except ValidationError as exc:
        raise WebhookPayloadError(_describe(exc)) from exc
    except RecursionError:  # a Mapping handed in directly is not depth-checked by _decode
        raise WebhookPayloadError(f"body nests arrays/objects deeper than {MAX_NESTING} levels") from None


def parse(body: bytes | str | Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> ChangeRecord:
    """Normalise a Dataverse webhook POST (body and headers, any header-name case) to a ``ChangeRecord``."""
    context = load_context(body)
    wire_headers = {str(name).lower(): value for name, value in (headers or {}).items()}
    target = context.input_parameter("Target")
    entity = target if isinstance(target, Entity) else None
    post = context.post_entity_images[0].value if context.post_entity_images else None
    pre = context.pre_entity_images[0].value if context.pre_entity_images else None
    announced_too_big = str(wire_headers.get(SIZE_EXCEEDED_HEADER) or "").strip().lower() not in {
        "",
        "false",
        "0",
    }
    return ChangeRecord(
        message=context.message_name,
        table=context.primary_entity_name,
        id=context.primary_entity_id,
        attributes=entity.plain_attributes() if entity else {},
        references=entity.references() if entity else {},
        formatted=entity.formatted() if entity else {},
        row_version=(entity and entity.row_version) or (post and post.row_version) or None,
        operation_id=context.operation_id,
        correlation_id=context.correlation_id or wire_headers.get(CORRELATION_HEADER),
        request_id=context.request_id,
        depth=context.depth,
        mode=context.mode,
        stage=context.stage,
        operation_created_on=context.operation_created_on,
        organization_name=context.organization_name,
        initiating_user_id=context.initiating_user_id,
        # A Create/Update without its Target cannot say what changed, header or not.
        size_exceeded=announced_too_big or (entity is None and context.message_name in {"Create", "Update"}),
        post_image=post.plain_attributes() if post else {},
        pre_image=pre.plain_attributes() if pre else {},
    )


def _decode(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            body = bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise WebhookPayloadError("body is not valid UTF-8") from None
    if isinstance(body, str):
        text = body.lstrip("\ufeff")
        _check_nesting(text)
        try:
            body = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except RecursionError:  # not expected after _check_nesting; never let it escape
            raise WebhookPayloadError(f"body nests arrays/objects deeper than {MAX_NESTING} levels") from None
        except ValueError as exc:  # JSONDecodeError, NaN/Infinity, a float out of range, a 5000-digit int
            raise WebhookPayloadError(f"body is not valid JSON ({_clip(str(exc))})") from None
    if isinstance(body, Mapping):
        return dict(body)
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(body), "a scalar"
    )
    raise WebhookPayloadError(f"body must be a JSON object, got {kind}")


def _check_nesting(text: str, limit: int = MAX_NESTING) -> None:
    """Refuse JSON text nesting arrays/objects deeper than ``limit``, without recursion (and so before
    ``json.loads``, which recurses once per level). Brackets inside strings do not count; an unbalanced
    closer is for json.loads to reject. Strings and everything but brackets are removed by regular
    expressions and the depth is summed in C: a Python loop over the tokens took twice as long (0.48 ms
    for a 9 KB delivery, about 4% of the host's CPU per webhook)."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    deepest = max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)
    if deepest > limit:
        raise WebhookPayloadError(f"body nests arrays/objects deeper than {limit} levels")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number out of range: {_clip(text, 40)}")
    return number


def _clip(text: str, limit: int = _MAX_PROBLEM_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(exc: ValidationError) -> str:
    problems = []
    errors = exc.errors(include_url=False, include_input=False)
    for error in errors[:_MAX_PROBLEMS]:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(
            "."
        )
        if error["type"] == "missing":
            problems.append(f"missing {where}")
        elif error["type"] in _OWN_ERRORS:
            problems.append(f"{where} {error['msg']}")
        else:
            problems.append(f"{where}: {error['msg']}")
    if len(errors) > _MAX_PROBLEMS:
        problems.append(f"and {len(errors) - _MAX_PROBLEMS} more problems")
    return "; ".join(_clip(problem) for problem in problems)
