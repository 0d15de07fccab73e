"""Rows of every table as dicts of plain values, one global row version counter (like SQL rowversion),
a per-table change log for change tracking, deletion tombstones and alternate-key indexes.

Rows are kept in an append-only order so pages can be served from a cursor without copying; the change
log is ordered by version so a delta query starts with a bisect. Lookups are stored as
``(table, id)`` tuples, dates as ISO strings, absent values are not stored at all."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .schema import Key


class Clock:
    """UTC "now" that tests can move forward (change-token expiry, timestamps)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return (datetime.now(UTC) + self.offset).replace(microsecond=0)

    def iso(self) -> str:
        return self.now().strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class TableData:
    rows: dict[str, dict] = field(default_factory=dict)
    order: list[str | None] = field(default_factory=list)  # append-only; holes for deleted rows
    position: dict[str, int] = field(default_factory=dict)
    change_versions: list[int] = field(default_factory=list)  # ascending
    change_ids: list[str] = field(default_factory=list)
    tombstones: dict[str, int] = field(default_factory=dict)  # id -> version of the deletion


def key_values(key: Key, row: dict) -> tuple | None:
    """The index entry of a row for an alternate key; None when a key column is empty."""
    values = []
    for name in key.attributes:
        value = row.get(name)
        if value is None:
            return None
        if isinstance(value, tuple):  # lookup
            value = value[1]
        values.append(value.casefold() if isinstance(value, str) else value)
    return tuple(values)


class KeyConflict(Exception):
    def __init__(self, key: Key, values: tuple) -> None:
        super().__init__(key.schema_name)
        self.key = key
        self.values = values


class Transaction:
    def __init__(self) -> None:
        self.undo: list[tuple[str, str, dict | None, int | None]] = []
        self.events: list = []  # filled by the layer above, fired after commit


class Store:
    """Thread-safe through one re-entrant lock; every read of a page and every write holds it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.version = 0
        self._tables: dict[str, TableData] = {}
        self._keys: dict[str, dict[str, tuple[Key, dict[tuple, str]]]] = {}
        self._txn: Transaction | None = None

    def data(self, table: str) -> TableData:
        data = self._tables.get(table)
        if data is None:
            data = self._tables[table] = TableData()
        return data

    @property
    def in_transaction(self) -> bool:
        """Only meaningful while holding the lock."""
        return self._txn is not None

    def next_version(self) -> int:
        self.version += 1
        return self.version

    # -- transactions -------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All writes inside happen or none do; nested blocks join the outermost one."""
        with self.lock:
            if self._txn is not None:
                yield self._txn
                return
            txn = self._txn = Transaction()
            try:
                yield txn
            except BaseException:
                for table, row_id, row, tombstone in reversed(txn.undo):
                    self._restore(table, row_id, row, tombstone)
                raise
            finally:
                self._txn = None

    def _remember(self, table: str, row_id: str) -> None:
        if self._txn is not None:
            data = self.data(table)
            self._txn.undo.append((table, row_id, data.rows.get(row_id), data.tombstones.get(row_id)))

    def _restore(self, table: str, row_id: str, row: dict | None, tombstone: int | None) -> None:
        data = self.data(table)
        current = data.rows.get(row_id)
        if current is not None:
            self._unindex(table, current)
        if row is None:
            self._unplace(data, row_id)
            data.rows.pop(row_id, None)
        else:
            data.rows[row_id] = row
            self._place(data, row_id)
            self._index(table, row_id, row)
        if tombstone is None:
            data.tombstones.pop(row_id, None)
        else:
            data.tombstones[row_id] = tombstone

    # -- alternate keys -----------------------------------------------------------------------------------

    def index_key(self, table: str, key: Key) -> bool:
        """Build the index of a new key; False (and no index) when existing rows are not unique."""
        with self.lock:
            index: dict[tuple, str] = {}
            for row_id, row in self.data(table).rows.items():
                values = key_values(key, row)
                if values is None:
                    continue
                if values in index:
                    return False
                index[values] = row_id
            self._keys.setdefault(table, {})[key.logical_name] = (key, index)
            return True

    def find_by_key(self, table: str, key: Key, values: tuple) -> str | None:
        entry = self._keys.get(table, {}).get(key.logical_name)
        if entry is not None:
            return entry[1].get(values)
        # A key whose index could not be built (duplicates): look it up the slow way, like an unindexed query.
        return next((i for i, r in self.data(table).rows.items() if key_values(key, r) == values), None)

    def _unindex(self, table: str, row: dict) -> None:
        for key, index in self._keys.get(table, {}).values():
            values = key_values(key, row)
            if values is not None:
                index.pop(values, None)

    def _index(self, table: str, row_id: str, row: dict) -> None:
        keys = self._keys.get(table, {}).values()
        entries = [(key, index, key_values(key, row)) for key, index in keys]
        for key, index, values in entries:
            if values is not None and index.get(values, row_id) != row_id:
                raise KeyConflict(key, values)
        for _, index, values in entries:
            if values is not None:
                index[values] = row_id

    # -- writes -------------------------------------------------------------------------------------------

    def _place(self, data: TableData, row_id: str) -> None:
        if row_id not in data.position:
            data.position[row_id] = len(data.order)
            data.order.append(row_id)

    def _unplace(self, data: TableData, row_id: str) -> None:
        position = data.position.pop(row_id, None)
        if position is not None:
            data.order[position] = None

    def _log(self, data: TableData, row_id: str, version: int) -> None:
        data.change_versions.append(version)
        data.change_ids.append(row_id)

    def put(self, table: str, row_id: str, row: dict) -> dict:
        """Insert or replace a whole row and stamp a new version; KeyConflict leaves everything as it was."""
        with self.lock:
            data = self.data(table)
            old = data.rows.get(row_id)
            if old is not None:
                self._unindex(table, old)
            try:
                self._index(table, row_id, row)
            except KeyConflict:
                if old is not None:
                    self._index(table, row_id, old)
                raise
            self._remember(table, row_id)
            row["versionnumber"] = version = self.next_version()
            data.rows[row_id] = row
            data.tombstones.pop(row_id, None)
            self._place(data, row_id)
            self._log(data, row_id, version)
            return row

    def delete(self, table: str, row_id: str) -> dict | None:
        with self.lock:
            data = self.data(table)
            row = data.rows.get(row_id)
            if row is None:
                return None
            self._remember(table, row_id)
            self._unindex(table, row)
            del data.rows[row_id]
            self._unplace(data, row_id)
            data.tombstones[row_id] = version = self.next_version()
            self._log(data, row_id, version)
            return row

    def bulk_insert(self, table: str, rows: list[tuple[str, dict]]) -> None:
        """Fast path for seeding: no undo log, one lock acquisition."""
        with self.lock:
            data = self.data(table)
            for row_id, row in rows:
                self._index(table, row_id, row)
                row["versionnumber"] = version = self.next_version()
                data.rows[row_id] = row
                self._place(data, row_id)
                data.change_versions.append(version)
                data.change_ids.append(row_id)

    # -- reads (callers hold the lock while they use the rows) --------------------------------------------

    def get(self, table: str, row_id: str) -> dict | None:
        return self.data(table).rows.get(row_id)

    def count(self, table: str) -> int:
        return len(self.data(table).rows)

    def scan(self, table: str, start: int = 0) -> Iterator[tuple[int, dict]]:
        """(position, row) in insertion order from a cursor position."""
        data = self.data(table)
        order, rows = data.order, data.rows
        for position in range(start, len(order)):
            row_id = order[position]
            if row_id is not None:
                yield position, rows[row_id]

    def changes(
        self, table: str, since: int, start: int | None, upto: int, deleted: bool
    ) -> Iterator[tuple[int, str, dict | None]]:
        """Change-log entries after version `since` up to `upto` that are still current: the row's
        latest version (deleted=False) or its deletion (deleted=True). Yields (log position, id, row)."""
        data = self.data(table)
        versions, ids = data.change_versions, data.change_ids
        position = bisect.bisect_right(versions, since) if start is None else start
        while position < len(versions) and versions[position] <= upto:
            version, row_id = versions[position], ids[position]
            if deleted:
                if data.tombstones.get(row_id) == version:
                    yield position, row_id, None
            else:
                row = data.rows.get(row_id)
                if row is not None and row["versionnumber"] == version:
                    yield position, row_id, row
            position += 1
