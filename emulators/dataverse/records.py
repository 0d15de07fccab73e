"""Writing rows the way Dataverse does: system columns, create / update / upsert / delete with their
precondition rules (If-Match / If-None-Match, duplicate keys, read-only tables), and the change events
that webhooks are fired from once the transaction commits; request payloads are read by `payloads.py`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import errors
from .changes import SYSTEM_TARGET_COLUMNS, Caller, ChangeEvent
from .errors import ApiError, bad_request, row_not_found
from .odata import new_guid
from .payloads import key_for, key_row, locate, parse_body
from .schema import Schema, Table
from .store import Clock, KeyConflict, Store, Transaction, key_values


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

    # -- rows as they are stored --------------------------------------------------------------------------

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
            values = parse_body(self.schema, self.store, table, body, caller)
            row_id = locate(self.store, table, key)
            key_columns = {}
            if isinstance(key, dict) and set(key) != {table.primary_id}:
                alternate = key_for(table, set(key))
                key_columns = key_row(table, alternate, key)
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
            row_id = locate(self.store, table, key)
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
