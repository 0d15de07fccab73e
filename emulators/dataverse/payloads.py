"""What a write request says, read the way Dataverse reads it: each column's JSON value checked against
the column's type (with the service's error texts) and turned into its stored form, primary and alternate
keys and `@odata.bind` references resolved to rows, and a body turned into the columns it sets."""

from __future__ import annotations

import re
from typing import Any

from . import errors
from .changes import Caller
from .errors import ApiError, bad_request, row_not_found
from .odata import API_PATH_PREFIX, is_guid, parse_datetime_literal, parse_key, split_path
from .schema import (
    BIGINT,
    BOOLEAN,
    DATETIME,
    DECIMAL,
    DOUBLE,
    ENTITYNAME,
    INT_RANGE,
    INTEGER,
    MEMO,
    MONEY,
    MULTISELECT,
    PICKLIST,
    STATE,
    STATUS,
    STRING,
    UNIQUEIDENTIFIER,
    Attribute,
    Key,
    Relationship,
    Schema,
    Table,
)
from .store import Store, key_values

EDM = {
    STRING: "Edm.String",
    MEMO: "Edm.String",
    ENTITYNAME: "Edm.String",
    INTEGER: "Edm.Int32",
    BIGINT: "Edm.Int64",
    DECIMAL: "Edm.Decimal",
    MONEY: "Edm.Decimal",
    DOUBLE: "Edm.Double",
    BOOLEAN: "Edm.Boolean",
    DATETIME: "Edm.DateTimeOffset",
    PICKLIST: "Edm.Int32",
    STATE: "Edm.Int32",
    STATUS: "Edm.Int32",
    MULTISELECT: "Edm.String",
    UNIQUEIDENTIFIER: "Edm.Guid",
}


def _payload_error(table: Table, value: Any, kind: str) -> ApiError:
    return ApiError(
        400,
        errors.PAYLOAD,
        f"Error identified in Payload provided by the user for Entity :'{table.entity_set}', For more "
        "information on this error please follow this help link "
        "https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : "
        f"Microsoft.OData.ODataException: Cannot convert the literal '{value}' to the expected "
        f"type '{EDM.get(kind, 'Edm.String')}'.",
    )


def _option_error(table: Table, attribute: Attribute, value: Any) -> ApiError:
    accepted = ",".join(str(o.value) for o in attribute.options)
    return ApiError(
        400,
        errors.OPTION_RANGE,
        f"A validation error occurred. The value {value} of '{attribute.logical_name}' on record of type "
        f"'{table.logical_name}' is outside the valid range. Accepted Values: {accepted}",
    )


def coerce(table: Table, attribute: Attribute, value: Any) -> Any:
    """Validate a JSON value for a column and turn it into the stored form."""
    if value is None:
        return None
    kind = attribute.type
    if kind in (STRING, MEMO, ENTITYNAME):
        if not isinstance(value, str):
            raise _payload_error(table, value, kind)
        if attribute.max_length is not None and len(value) > attribute.max_length:
            raise ApiError(
                400,
                errors.LENGTH,
                f"A validation error occurred.  The length of the '{attribute.logical_name}' attribute of "
                f"the '{table.logical_name}' entity exceeded the maximum allowed length of "
                f"'{attribute.max_length}'.",
            )
        return value
    if kind in (INTEGER, BIGINT):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _payload_error(table, value, kind)
        if kind == INTEGER and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise _payload_error(table, value, kind)
        return value
    if kind in (DECIMAL, DOUBLE, MONEY):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _payload_error(table, value, kind)
        return value
    if kind == BOOLEAN:
        if not isinstance(value, bool):
            raise _payload_error(table, value, kind)
        return value
    if kind == DATETIME:
        normalised = parse_datetime_literal(value) if isinstance(value, str) else None
        if normalised is None:
            raise _payload_error(table, value, kind)
        if attribute.date_only:
            return normalised[:10]
        return normalised if "T" in normalised else f"{normalised}T00:00:00Z"
    if kind in (PICKLIST, STATE, STATUS):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _payload_error(table, value, kind)
        if attribute.label_of(value) is None:
            raise _option_error(table, attribute, value)
        return value
    if kind == MULTISELECT:
        if not isinstance(value, str):
            raise _payload_error(table, value, kind)
        chosen = [v.strip() for v in value.split(",") if v.strip()]
        for item in chosen:
            if not re.fullmatch(r"-?\d+", item) or attribute.label_of(int(item)) is None:
                raise _option_error(table, attribute, item)
        return ",".join(chosen) or None
    if kind == UNIQUEIDENTIFIER:
        if not isinstance(value, str) or not is_guid(value):
            raise _payload_error(table, value, kind)
        return value.lower()
    raise _payload_error(table, value, kind)


# -- locating rows ----------------------------------------------------------------------------------------


def key_for(table: Table, names: set[str]) -> Key:
    for key in table.keys.values():
        if set(key.attributes) == names:
            return key
    raise bad_request(
        f"The key attributes '{','.join(sorted(names))}' do not match any key defined on "
        f"'{table.logical_name}'.",
        errors.QUERY_SYNTAX,
    )


def locate(store: Store, table: Table, key: str | dict[str, Any]) -> str | None:
    """Row id for a primary key or an alternate key (None when no such row)."""
    if isinstance(key, dict) and set(key) == {table.primary_id} and isinstance(key[table.primary_id], str):
        key = key[table.primary_id]
    if isinstance(key, str):
        return key if store.get(table.logical_name, key) is not None else None
    alternate = key_for(table, set(key))
    values = key_values(alternate, key_row(table, alternate, key))
    return store.find_by_key(table.logical_name, alternate, values)


def key_row(table: Table, key: Key, given: dict[str, Any]) -> dict[str, Any]:
    row = {}
    for name in key.attributes:
        attribute = table.attribute(name)
        value = given[name]
        if attribute.is_lookup:
            row[name] = (attribute.targets[0], str(value).lower())
        else:
            row[name] = coerce(table, attribute, value)
    return row


def resolve_bind(
    schema: Schema, store: Store, relationship: Relationship, value: Any, caller: Caller
) -> tuple[str, str]:
    if not isinstance(value, str):
        raise _payload_error(schema.tables[relationship.referencing_entity], value, STRING)
    if value.startswith("$") and caller.content_ids is not None:
        reference = caller.content_ids.get(value[1:])
        if reference is None:
            raise bad_request(f"Content-ID Reference: '{value}' does not exist in the batch context.")
        return reference
    segments = split_path(API_PATH_PREFIX.sub("", value))
    target = schema.by_set(segments[0].name) if len(segments) == 1 and segments[0].key else None
    if target is None or target.logical_name != relationship.referenced_entity:
        raise bad_request(
            f"The value '{value}' of '{relationship.navigation_property}@odata.bind' does not refer to a "
            f"row of '{relationship.referenced_entity}'.",
            errors.QUERY_SYNTAX,
        )
    key = parse_key(segments[0].key)
    row_id = locate(store, target, key)
    if row_id is None:
        raise row_not_found(target.logical_name, key if isinstance(key, str) else str(key))
    return (target.logical_name, row_id)


# -- payloads ---------------------------------------------------------------------------------------------


def parse_body(schema: Schema, store: Store, table: Table, body: Any, caller: Caller) -> dict[str, Any]:
    """Column -> stored value for the columns a request sets (None clears a column)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", errors.PAYLOAD)
    values: dict[str, Any] = {}
    for name, raw in body.items():
        if name.endswith("@odata.bind"):
            nav = name[: -len("@odata.bind")]
            relationship = table.relationships.get(nav)
            if relationship is None:
                raise bad_request(
                    f"An undeclared property '{nav}' which only has property annotations in the payload "
                    "but no property value was found in the payload. In OData, only declared "
                    "navigation properties and declared named streams can be represented as properties "
                    "without values.",
                    errors.QUERY_SYNTAX,
                )
            target = None if raw is None else resolve_bind(schema, store, relationship, raw, caller)
            values[relationship.referencing_attribute] = target
            continue
        if name.startswith("@") or "@" in name:
            continue  # instance annotations such as @odata.type / @odata.etag
        attribute = table.attribute(name)
        if attribute.is_lookup:
            raise bad_request(
                f"The lookup column '{name}' must be set with '<navigation property>@odata.bind'.",
                errors.QUERY_SYNTAX,
            )
        if attribute.is_primary_id or attribute.writable:
            values[name] = coerce(table, attribute, raw)
    return values
