"""Writing rows the way Dataverse does: payload validation per column type, `@odata.bind` lookups,
system columns, create / update / upsert / delete with their precondition rules, and the change
events that webhooks are fired from once the transaction commits."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import ApiError, bad_request, row_not_found
from .odata import is_guid, new_guid, parse_datetime_literal, parse_key, split_path
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
from .store import Clock, KeyConflict, Store, Transaction, key_values

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
SYSTEM_TARGET_COLUMNS = ("modifiedon", "modifiedby", "modifiedonbehalfby")
_API_PREFIX = re.compile(r"^(?:https?://[^/]+)?/?(?:api/data/v9\.\d/)?")


@dataclass
class ChangeEvent:
    """One Create/Update/Delete, as a plug-in step would see it."""

    message: str
    table: str
    row_id: str
    target: dict  # Create: the new row; Update: submitted + computed + system columns; Delete: {}
    pre: dict | None
    post: dict | None
    user_id: str
    correlation_id: str
    operation_id: str = field(default_factory=new_guid)
    # The row's `versionnumber` once this Create/Update committed (later writes get other versions; the
    # stored row dicts are replaced, never changed in place, so `post` keeps this version too).
    version: int | None = None


@dataclass
class Caller:
    """Who is writing (the application user of a token, or a person in the UI) and the request's ids."""

    user_id: str
    correlation_id: str = field(default_factory=new_guid)
    content_ids: dict[str, tuple[str, str]] | None = None  # batch change set `$n` references


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


def _etag_version(header: str) -> int | None:
    match = re.fullmatch(r'\s*(?:W/)?"(\d+)"\s*', header)
    return int(match.group(1)) if match else None


class Records:
    def __init__(
        self, schema: Schema, store: Store, clock: Clock, on_commit: Callable[[list[ChangeEvent]], None]
    ) -> None:
        self.schema = schema
        self.store = store
        self.clock = clock
        self.on_commit = on_commit
        # Per-table checks of the complete row before it is stored (e.g. webhook registrations).
        self.before_write: dict[str, Callable[[dict], None]] = {}

    @contextmanager
    def atomic(self) -> Iterator[Transaction]:
        """A transaction whose change events go to `on_commit` (webhooks) after the outermost commit."""
        with self.store.lock:
            outermost = not self.store.in_transaction
            with self.store.transaction() as txn:
                yield txn
            events = list(txn.events) if outermost else []
        if events:
            self.on_commit(events)

    # -- locating rows ------------------------------------------------------------------------------------

    def key_for(self, table: Table, names: set[str]) -> Key:
        for key in table.keys.values():
            if set(key.attributes) == names:
                return key
        raise bad_request(
            f"The key attributes '{','.join(sorted(names))}' do not match any key defined on "
            f"'{table.logical_name}'.",
            errors.QUERY_SYNTAX,
        )

    def locate(self, table: Table, key: str | dict[str, Any]) -> str | None:
        """Row id for a primary key or an alternate key (None when no such row)."""
        if (
            isinstance(key, dict)
            and set(key) == {table.primary_id}
            and isinstance(key[table.primary_id], str)
        ):
            key = key[table.primary_id]
        if isinstance(key, str):
            return key if self.store.get(table.logical_name, key) is not None else None
        alternate = self.key_for(table, set(key))
        values = key_values(alternate, self.key_row(table, alternate, key))
        return self.store.find_by_key(table.logical_name, alternate, values)

    def key_row(self, table: Table, key: Key, given: dict[str, Any]) -> dict[str, Any]:
        row = {}
        for name in key.attributes:
            attribute = table.attribute(name)
            value = given[name]
            if attribute.is_lookup:
                row[name] = (attribute.targets[0], str(value).lower())
            else:
                row[name] = coerce(table, attribute, value)
        return row

    def resolve_bind(self, relationship: Relationship, value: Any, caller: Caller) -> tuple[str, str]:
        if not isinstance(value, str):
            raise _payload_error(self.schema.tables[relationship.referencing_entity], value, STRING)
        if value.startswith("$") and caller.content_ids is not None:
            reference = caller.content_ids.get(value[1:])
            if reference is None:
                raise bad_request(f"Content-ID Reference: '{value}' does not exist in the batch context.")
            return reference
        segments = split_path(_API_PREFIX.sub("", value))
        target = self.schema.by_set(segments[0].name) if len(segments) == 1 and segments[0].key else None
        if target is None or target.logical_name != relationship.referenced_entity:
            raise bad_request(
                f"The value '{value}' of '{relationship.navigation_property}@odata.bind' does not refer to a "
                f"row of '{relationship.referenced_entity}'.",
                errors.QUERY_SYNTAX,
            )
        key = parse_key(segments[0].key)
        row_id = self.locate(target, key)
        if row_id is None:
            raise row_not_found(target.logical_name, key if isinstance(key, str) else str(key))
        return (target.logical_name, row_id)

    # -- payloads -----------------------------------------------------------------------------------------

    def parse_body(self, table: Table, body: Any, caller: Caller) -> dict[str, Any]:
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
                target = None if raw is None else self.resolve_bind(relationship, raw, caller)
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

    def _settle_state(self, table: Table, values: dict[str, Any], row: dict) -> None:
        """Keep statecode and statuscode consistent, like the platform does."""
        if "statecode" not in table.attributes:
            return
        status = table.attributes["statuscode"]
        if "statecode" in values and "statuscode" not in values:
            row["statuscode"] = table.default_status(row["statecode"])
        elif "statuscode" in values:
            option = next(o for o in status.options if o.value == row["statuscode"])
            if "statecode" in values and row["statecode"] != option.state:
                raise bad_request(
                    f"{row['statuscode']} is not a valid status code for state code {row['statecode']} "
                    f"on {table.logical_name}.",
                    errors.OPTION_RANGE,
                )
            row["statecode"] = option.state

    def _computed(self, table: Table, row: dict) -> list[str]:
        if table.logical_name == "contact":
            row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p) or None
            if row["fullname"] is None:
                del row["fullname"]
            return ["fullname"]
        return []

    def _put(self, table: Table, row_id: str, row: dict) -> dict:
        check = self.before_write.get(table.logical_name)
        if check is not None:
            check(row)
        try:
            return self.store.put(table.logical_name, row_id, row)
        except KeyConflict as conflict:
            raise ApiError(
                412,
                errors.DUPLICATE,
                f"A record that has the attribute values {', '.join(map(str, conflict.values))} already "
                f"exists. The entity key {conflict.key.schema_name} requires that this set of attributes "
                "contains unique values. Select unique values and try again.",
            ) from None

    def _writable(self, table: Table) -> None:
        if table.read_only:
            raise ApiError(
                405,
                errors.INVALID_ARGUMENT,
                f"The entity '{table.logical_name}' is read-only in this environment.",
            )

    # -- operations ---------------------------------------------------------------------------------------

    def create(self, table: Table, values: dict[str, Any], caller: Caller) -> tuple[str, dict]:
        """Insert a row from parsed values (its id may be among them); fires Create."""
        self._writable(table)
        row_id = values.pop(table.primary_id, None) or new_guid()
        with self.atomic() as txn:
            if self.store.get(table.logical_name, row_id) is not None:
                raise ApiError(412, errors.DUPLICATE, "Cannot insert duplicate key.")
            now, user = self.clock.iso(), ("systemuser", caller.user_id)
            row = {table.primary_id: row_id}
            row.update({k: v for k, v in values.items() if v is not None})
            row.update(createdon=now, modifiedon=now, createdby=user, modifiedby=user)
            if "ownerid" in table.attributes:
                row.setdefault("ownerid", user)
            if table.is_activity:
                row["activitytypecode"] = table.logical_name
            if "statecode" in table.attributes:
                row.setdefault("statecode", 0)
                self._settle_state(table, {"statecode": row["statecode"], **values}, row)
            self._computed(table, row)
            row = self._put(table, row_id, row)
            target = {k: v for k, v in row.items() if k != "versionnumber"}
            txn.events.append(
                ChangeEvent(
                    "Create",
                    table.logical_name,
                    row_id,
                    target,
                    None,
                    row,
                    caller.user_id,
                    caller.correlation_id,
                    version=row["versionnumber"],
                )
            )
            return row_id, row

    def update(self, table: Table, row_id: str, values: dict[str, Any], caller: Caller) -> dict:
        """Change some columns of an existing row; fires Update with those columns as the Target."""
        self._writable(table)
        values.pop(table.primary_id, None)
        with self.atomic() as txn:
            old = self.store.get(table.logical_name, row_id)
            if old is None:
                raise row_not_found(table.logical_name, row_id)
            row = dict(old)
            for name, value in values.items():
                if value is None:
                    row.pop(name, None)
                else:
                    row[name] = value
            self._settle_state(table, values, row)
            computed = self._computed(table, row) if {"firstname", "lastname"} & values.keys() else []
            row.update(modifiedon=self.clock.iso(), modifiedby=("systemuser", caller.user_id))
            row.pop("modifiedonbehalfby", None)
            row = self._put(table, row_id, row)
            target = dict(values)
            if "statecode" in values or "statuscode" in values:
                target.update(statecode=row.get("statecode"), statuscode=row.get("statuscode"))
            target[table.primary_id] = row_id
            target.update({name: row.get(name) for name in computed})
            target.update({name: row.get(name) for name in SYSTEM_TARGET_COLUMNS})
            txn.events.append(
                ChangeEvent(
                    "Update",
                    table.logical_name,
                    row_id,
                    target,
                    old,
                    row,
                    caller.user_id,
                    caller.correlation_id,
                    version=row["versionnumber"],
                )
            )
            return row

    def upsert(
        self,
        table: Table,
        key: str | dict[str, Any],
        body: Any,
        caller: Caller,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> tuple[str, bool]:
        """PATCH semantics: update when the row exists, else create it (If-Match / If-None-Match rules)."""
        self._writable(table)
        with self.atomic():
            values = self.parse_body(table, body, caller)
            row_id = self.locate(table, key)
            key_columns = {}
            if isinstance(key, dict) and set(key) != {table.primary_id}:
                alternate = self.key_for(table, set(key))
                key_columns = self.key_row(table, alternate, key)
                repeated = {name: values[name] for name in key_columns if name in values}
                if key_values(alternate, {**key_columns, **repeated}) != key_values(alternate, key_columns):
                    raise bad_request(
                        f"The key columns {sorted(repeated)} in the body differ from the alternate key "
                        "in the URL.",
                        errors.INVALID_ARGUMENT,
                    )
            if row_id is None:
                if if_match is not None:
                    raise row_not_found(table.logical_name, key if isinstance(key, str) else str(key))
                values.update(key_columns)
                if isinstance(key, str):
                    values[table.primary_id] = key
                elif table.primary_id in key:
                    values[table.primary_id] = str(key[table.primary_id]).lower()
                row_id, _ = self.create(table, values, caller)
                return row_id, True
            if if_none_match is not None and if_none_match.strip() == "*":
                raise ApiError(412, errors.DUPLICATE, "A record with matching key values already exists.")
            self._check_version(table, row_id, if_match)
            self.update(table, row_id, values, caller)
            return row_id, False

    def _check_version(self, table: Table, row_id: str, if_match: str | None) -> None:
        if if_match is None or if_match.strip() == "*":
            return
        current = self.store.get(table.logical_name, row_id)["versionnumber"]
        if _etag_version(if_match) != current:
            raise ApiError(
                412,
                errors.VERSION_MISMATCH,
                "The version of the existing record doesn't match the RowVersion property provided.",
            )

    def delete(
        self, table: Table, key: str | dict[str, Any], caller: Caller, *, if_match: str | None = None
    ) -> str:
        self._writable(table)
        with self.atomic() as txn:
            row_id = self.locate(table, key)
            if row_id is None:
                raise row_not_found(table.logical_name, key if isinstance(key, str) else str(key))
            self._check_version(table, row_id, if_match)
            old = self.store.delete(table.logical_name, row_id)
            txn.events.append(
                ChangeEvent(
                    "Delete", table.logical_name, row_id, {}, old, None, caller.user_id, caller.correlation_id
                )
            )
            return row_id

    def compensate(self, events: list[ChangeEvent]) -> None:
        """Undo committed changes (a synchronous step failed) with new versions, so change tracking
        readers see the row come back; fires nothing."""
        with self.store.lock:
            for event in reversed(events):
                if event.message == "Create":
                    self.store.delete(event.table, event.row_id)
                elif event.pre is not None:
                    self.store.put(event.table, event.row_id, dict(event.pre))
