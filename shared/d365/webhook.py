"""Dataverse webhook bodies (the ``RemoteExecutionContext``) and their normalisation to a ``ChangeRecord``.

The context's models, and how Dataverse shapes them on the wire, are in ``shared.d365.execution_context``.
"""

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.d365.execution_context import (
    Entity,
    EntityImage,
    EntityReference,
    KeyValue,
    Money,
    OptionSetValue,
    OptionSetValueCollection,
    Reference,
    RemoteExecutionContext,
    parse_wcf_date,
    to_plain,
)

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
# Validation errors whose message is phrased to follow the field name ("PrimaryEntityId is not a GUID"):
# the custom errors of the execution_context validators.
_OWN_ERRORS = frozenset({"guid", "wcf_date", "key_value_pairs"})


class WebhookPayloadError(ValueError):
    """The body is not a Dataverse ``RemoteExecutionContext`` this module can read."""


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
