"""Campaign's data: one `Table` per resource, guarded by one lock in `Store`, with the engine-call counters.

Listing pages are keyset pages (`_lineStart` carries the last row's sort key and row id), so a page costs a
bisect into a sorted index rather than a copy of the table; the sorted index of an order is rebuilt only
after a write. Lookups by identification key and by email go through hash indexes.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .clock import EmulatedClock, campaign_timestamp, parse_timestamp
from .schema import OPT_OUT_FLAGS, DataError, Filter, Resource, opt_out_timestamp_field

ENGINE_CALL_KINDS = ("insert", "update", "delete", "read")
Condition = tuple[Filter, str]
Order = tuple[str, bool]  # (field, descending)


def _sort_key(value: Any) -> tuple:
    """Totally ordered key for any stored scalar (cus fields may mix types)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, value)
    return (3, str(value))


def copy_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rows are flat apart from group fields (`location`); much cheaper than `copy.deepcopy`."""
    return {name: dict(value) if isinstance(value, dict) else value for name, value in row.items()}


def encode_cursor(key: tuple, row_id: int) -> str:
    raw = json.dumps([list(key), row_id], separators=(",", ":")).encode()
    return "@" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[tuple, int]:
    try:
        text = cursor.removeprefix("@")
        key, row_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return tuple(key), int(row_id)
    except (ValueError, TypeError, binascii.Error):
        raise DataError("RST-360011", f"Invalid value '{cursor}' for parameter '_lineStart'.") from None


class Table:
    """The rows of one resource. Not thread-safe on its own: `Store` holds the lock."""

    def __init__(self, resource: Resource, clock: EmulatedClock) -> None:
        self.resource = resource
        self._clock = clock
        self._rows: dict[int, dict[str, Any]] = {}
        self._ids: list[int] = []  # ascending = Campaign's default order
        self._by_pkey: dict[str, int] = {}
        # identification key value (when not empty) -> row ids: one, unless a test planted a duplicate
        self._by_key: dict[str, list[int]] = {}
        self._by_email: dict[str, set[int]] = {}
        self._next_id = 1
        self._version = 0
        self._sorted: dict[Order | None, tuple[int, list[tuple[tuple, int]]]] = {}
        self.custom_fields: set[str] = set()  # cus* fields seen on writes (the profile accepts any)

    def __len__(self) -> int:
        return len(self._rows)

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, values: dict[str, Any], *, unique_key: bool = True) -> dict[str, Any]:
        if unique_key:
            self._check_key(values, None)
        row = {"PKey": "@" + secrets.token_urlsafe(42), **self.resource.defaults()}
        now = campaign_timestamp(self._clock.now())
        row_id = self._next_id
        self._next_id += 1
        row["created"] = row["lastModified"] = now
        self._apply(row, values, now)
        self._rows[row_id] = row
        self._ids.append(row_id)
        self._by_pkey[row["PKey"]] = row_id
        self._index(row_id, row)
        self._version += 1
        return row

    def update(self, pkey: str, values: dict[str, Any]) -> dict[str, Any]:
        row_id = self._id_of(pkey)
        row = self._rows[row_id]
        if not values:
            return row
        self._check_key(values, row_id)
        self._unindex(row_id, row)
        now = campaign_timestamp(self._clock.now())
        self._apply(row, values, now)
        row["lastModified"] = now
        self._index(row_id, row)
        self._version += 1
        return row

    def delete(self, pkey: str) -> dict[str, Any]:
        row_id = self._id_of(pkey)
        row = self._rows.pop(row_id)
        del self._ids[bisect.bisect_left(self._ids, row_id)]
        del self._by_pkey[pkey]
        self._unindex(row_id, row)
        self._version += 1
        return row

    def unlink(self, field_name: str, pkey: str) -> None:
        """Clear a link to a deleted row (Campaign sets the foreign key to 0)."""
        for row in self._rows.values():
            if row.get(field_name) == pkey:
                row[field_name] = None

    def _apply(self, row: dict[str, Any], values: dict[str, Any], now: str) -> None:
        for name, value in values.items():
            if name in self.resource.groups:
                row[name].update(value)
                continue
            if name in OPT_OUT_FLAGS and row.get(name) != value:
                row[opt_out_timestamp_field(name)] = now
            if name not in self.resource.fields:
                self.custom_fields.add(name)
            row[name] = value
        if "email" in self.resource.fields:
            email = row["email"]
            row["domain"] = email.rsplit("@", 1)[1].lower() if "@" in email else ""
            name = " ".join(part for part in (row["firstName"], row["lastName"]) if part)
            row["title"] = f"{name} ({email})" if email else name

    def _check_key(self, values: dict[str, Any], row_id: int | None) -> None:
        key = self.resource.key
        value = values.get(key) if key else None
        if not value:
            return
        if any(owner != row_id for owner in self._by_key.get(value, ())):
            table = self.resource.schema.replace(":", "")
            raise DataError(
                "PGS-220000",
                f"A '{self.resource.label}' with the same key '{value}' already exists. "
                f"PGS-220000 PostgreSQL error: ERROR:  duplicate key value violates unique constraint "
                f'"{table}_{key.lower()}" DETAIL:  Key (s{key.lower()})=({value}) already exists.',
            )

    def _index(self, row_id: int, row: dict[str, Any]) -> None:
        key = self.resource.key
        if key and row.get(key):
            self._by_key.setdefault(row[key], []).append(row_id)
        if row.get("email"):
            self._by_email.setdefault(row["email"].lower(), set()).add(row_id)

    def _unindex(self, row_id: int, row: dict[str, Any]) -> None:
        key = self.resource.key
        owners = self._by_key.get(row[key]) if key and row.get(key) else None
        if owners and row_id in owners:
            owners.remove(row_id)
            if not owners:
                del self._by_key[row[key]]
        if row.get("email"):
            owners = self._by_email.get(row["email"].lower())
            if owners is not None:
                owners.discard(row_id)
                if not owners:
                    del self._by_email[row["email"].lower()]

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, pkey: str) -> dict[str, Any] | None:
        row_id = self._by_pkey.get(pkey)
        return None if row_id is None else self._rows[row_id]

    def get_by_key(self, value: str) -> dict[str, Any] | None:
        owners = self._by_key.get(value)
        return self._rows[owners[0]] if owners else None

    def rows(self) -> Iterator[dict[str, Any]]:
        return (self._rows[row_id] for row_id in self._ids)

    def _id_of(self, pkey: str) -> int:
        row_id = self._by_pkey.get(pkey)
        if row_id is None:
            raise not_found(self.resource, pkey)
        return row_id

    def query(
        self, conditions: list[Condition], order: Order | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of rows matching all conditions, and the cursor of the next page (None at the end)."""
        matches = self._predicate(conditions)
        if order is None and any(f.kind == "since" for f, _ in conditions):
            order = ("lastModified", False)
        entries = self._entries(conditions, order)
        descending = bool(order and order[1])
        if cursor is not None:
            after = decode_cursor(cursor)
            start = (
                bisect.bisect_left(entries, after) - 1 if descending else bisect.bisect_right(entries, after)
            )
        else:
            start = len(entries) - 1 if descending else self._since_start(entries, conditions, order)
        found: list[tuple[tuple, int]] = []
        step = -1 if descending else 1
        index = start
        while 0 <= index < len(entries) and len(found) <= limit:
            entry = entries[index]
            if matches(self._rows[entry[1]]):
                found.append(entry)
            index += step
        next_cursor = encode_cursor(*found[limit - 1]) if len(found) > limit else None
        return [self._rows[row_id] for _, row_id in found[:limit]], next_cursor

    def count(self, conditions: list[Condition]) -> int:
        matches = self._predicate(conditions)
        return sum(1 for _, row_id in self._entries(conditions, None) if matches(self._rows[row_id]))

    def _entries(self, conditions: list[Condition], order: Order | None) -> list[tuple[tuple, int]]:
        """(sort key, row id) ascending: a small sorted list for index lookups, else the cached index."""
        if order is not None:
            self._check_order(order[0])
        candidates = self._indexed_candidates(conditions)
        if candidates is not None:
            return sorted((self._key(self._rows[row_id], order), row_id) for row_id in candidates)
        cached = self._sorted.get(order)
        if cached is None or cached[0] != self._version:
            if order is None:
                entries = [((), row_id) for row_id in self._ids]
            else:
                entries = sorted((self._key(self._rows[row_id], order), row_id) for row_id in self._ids)
            cached = (self._version, entries)
            self._sorted[order] = cached
        return cached[1]

    def _since_start(self, entries: list, conditions: list[Condition], order: Order | None) -> int:
        """Skip straight to the first row modified at or after a `since` filter when ordered that way."""
        if order != ("lastModified", False):
            return 0
        since = [value for f, value in conditions if f.kind == "since"]
        return bisect.bisect_left(entries, ((3, max(since)), -1)) if since else 0

    def _indexed_candidates(self, conditions: list[Condition]) -> set[int] | None:
        for spec, value in conditions:
            if spec.kind == "equals" and spec.field == self.resource.key:
                return set(self._by_key.get(value, ()))
            if spec.kind == "equals" and spec.field == "email":
                return set(self._by_email.get(value.lower(), ()))
        return None

    def _key(self, row: dict[str, Any], order: Order | None) -> tuple:
        return () if order is None else _sort_key(row.get(order[0]))

    def _check_order(self, name: str) -> None:
        if name not in self.resource.fields and name not in self.custom_fields:
            raise DataError(
                "XTK-170036", f"Unable to sort on '{name}': unknown for resource '{self.resource.name}'."
            )

    def _predicate(self, conditions: list[Condition]) -> Callable[[dict[str, Any]], bool]:
        tests = []
        for spec, value in conditions:
            if spec.kind == "text":
                needle = value.lower()
                tests.append(
                    lambda row, n=needle: (
                        n in row.get("email", "").lower() or n in row.get("lastName", "").lower()
                    )
                )
            elif spec.kind == "since":
                tests.append(lambda row, v=value: row["lastModified"] >= v)
            elif spec.field == "email":
                address = value.lower()
                tests.append(lambda row, v=address: row.get("email", "").lower() == v)
            else:
                tests.append(lambda row, f=spec.field, v=value: str(row.get(f)) == v)
        return lambda row: all(test(row) for test in tests)


def not_found(resource: Resource, key: str) -> DataError:
    return DataError(
        "RST-360011",
        f"Cannot find document with path '{resource.label}' from key '{key}' "
        f"(document with schema '{resource.name}').",
        status=404,
    )


class Store:
    """All tables behind one lock, plus the engine-call counters (Adobe's licence metric)."""

    def __init__(self, resources: dict[str, Resource], clock: EmulatedClock) -> None:
        self.lock = threading.RLock()
        self.tables = {name: Table(resource, clock) for name, resource in resources.items()}
        self.engine_calls: dict[str, int] = {}
        self.engine_calls_by_resource: dict[str, dict[str, int]] = {}
        self.reset_counters()

    def reset_counters(self) -> None:
        with self.lock:
            self.engine_calls = {kind: 0 for kind in (*ENGINE_CALL_KINDS, "total")}
            self.engine_calls_by_resource = {
                name: dict.fromkeys(ENGINE_CALL_KINDS, 0) for name in self.tables
            }

    def count_call(self, resource: str, kind: str) -> None:
        with self.lock:
            self.engine_calls[kind] += 1
            self.engine_calls["total"] += 1
            self.engine_calls_by_resource[resource][kind] += 1

    def table(self, name: str) -> Table:
        return self.tables[name]

    def create(self, resource: str, values: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._check_links(resource, values)
            return copy_row(self.tables[resource].insert(values))

    def update(self, resource: str, pkey: str, values: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._check_links(resource, values)
            return copy_row(self.tables[resource].update(pkey, values))

    def delete(self, resource: str, pkey: str) -> None:
        with self.lock:
            self.tables[resource].delete(pkey)
            for table in self.tables.values():
                for spec in table.resource.fields.values():
                    if spec.kind == "link" and spec.target == resource:
                        table.unlink(spec.name, pkey)

    def get(self, resource: str, pkey: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.tables[resource].get(pkey)
            return None if row is None else copy_row(row)

    def get_by_key(self, resource: str, value: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.tables[resource].get_by_key(value)
            return None if row is None else copy_row(row)

    def query(
        self, resource: str, conditions: list[Condition], order: Order | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        with self.lock:
            rows, next_cursor = self.tables[resource].query(conditions, order, cursor, limit)
            return [copy_row(row) for row in rows], next_cursor

    def count(self, resource: str, conditions: list[Condition]) -> int:
        with self.lock:
            return self.tables[resource].count(conditions)

    def snapshot(self, resource: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy_row(row) for row in self.tables[resource].rows()]

    def _check_links(self, resource: str, values: dict[str, Any]) -> None:
        fields = self.tables[resource].resource.fields
        for name, value in values.items():
            spec = fields.get(name)
            if spec is not None and spec.kind == "link" and value is not None:
                target = self.tables[spec.target]
                if target.get(value) is None:
                    raise not_found(target.resource, value)


def since_value(text: str) -> str:
    """A `since` filter parameter in the form stored rows compare against."""
    try:
        return campaign_timestamp(parse_timestamp(text))
    except ValueError:
        raise DataError("XTK-170006", f"Invalid date '{text}' for parameter 'since_parameter'.") from None
