"""The spill database: both sides of a mapping on disk (SQLite in a temporary directory), joined by key
there, so memory stays flat whatever the size (see the package docstring)."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator

from shared.flows.verify.rules import Finding

_SPILL_BATCH = 1000  # drifted records written to the spill database at once


class Spill:
    """Both sides of one mapping in a temporary directory: `dynamics.db` (table `rows`) and `campaign.db`
    (table `records`), each written by its own reader thread, then joined by key; `drift.db` keeps the
    drifted keys for the repair. Everything is deleted on exit."""

    def __init__(self, directory: str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="acsd365-verify-", dir=directory)
        self.path = self._tmp.name
        self._dynamics = os.path.join(self.path, "dynamics.db")
        self._campaign = os.path.join(self.path, "campaign.db")
        self._db: sqlite3.Connection | None = None
        self._drift = self._open(os.path.join(self.path, "drift.db"))
        self._drift.execute("CREATE TABLE drift (key TEXT, source_id TEXT, pkeys TEXT)")
        self._pending: list[tuple[str, str, str]] = []

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        for db in (self._db, self._drift):
            if db is not None:
                db.close()
        self._tmp.cleanup()

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False)
        # A scratch database: nothing to recover after a crash, so no journal and no fsync.
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        return db

    @property
    def size(self) -> int:
        return sum(entry.stat().st_size for entry in os.scandir(self.path) if entry.is_file())

    # -- loading (each on its own thread) -------------------------------------------------------------

    def load_dynamics(self, batches: Iterable[list[tuple[str, str | None, int, str | None]]]) -> None:
        """Batches of (key, id or None when it is the key, state, packed compared values or None)."""
        self._load(
            self._dynamics,
            "CREATE TABLE rows (key TEXT NOT NULL, source_id TEXT, state INTEGER NOT NULL, vals TEXT)",
            "INSERT INTO rows VALUES (?, ?, ?, ?)",
            batches,
            "CREATE INDEX rows_key ON rows (key)",
        )

    def load_campaign(self, batches: Iterable[list[tuple[str, str, str]]]) -> None:
        """Batches of (key, PKey, packed compared values)."""
        self._load(
            self._campaign,
            "CREATE TABLE records (key TEXT NOT NULL, pkey TEXT NOT NULL, vals TEXT NOT NULL)",
            "INSERT INTO records VALUES (?, ?, ?)",
            batches,
            "CREATE INDEX records_key ON records (key)",
        )

    def _load(self, path: str, create: str, insert: str, batches: Iterable[Iterable], index: str) -> None:
        db = self._open(path)
        try:
            db.execute(create)
            for batch in batches:
                db.executemany(insert, batch)
                db.commit()
            db.execute(index)  # after the inserts: one sort instead of a b-tree update per row
            db.commit()
        finally:
            db.close()

    # -- the join --------------------------------------------------------------------------------------

    def _joined(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self._dynamics)
            self._db.execute("ATTACH DATABASE ? AS campaign", (self._campaign,))
        return self._db

    def rows_with_records(self) -> Iterator[tuple[str, str, int, str | None, list[tuple[str, str]]]]:
        """Every Dynamics row with the Campaign records of its key: (key, id, state, packed values,
        [(PKey, packed values)]), in the order the rows were read (the join needs no sort)."""
        cursor = self._joined().execute(
            "SELECT d.rowid, d.key, d.source_id, d.state, d.vals, c.pkey, c.vals "
            "FROM rows AS d LEFT JOIN campaign.records AS c ON c.key = d.key ORDER BY d.rowid"
        )
        for _, group in itertools.groupby(cursor, key=lambda r: r[0]):
            rows = list(group)  # one per Campaign record of the key: one, or a few duplicates
            _, key, source_id, state, values, pkey, _ = rows[0]
            records = [] if pkey is None else [(r[5], r[6]) for r in rows]
            yield key, source_id or key, state, values, records

    def records_without_rows(self) -> Iterator[tuple[str, list[tuple[str, str]]]]:
        """Campaign records whose key no Dynamics row has, grouped by key."""
        cursor = self._joined().execute(
            "SELECT c.key, c.pkey, c.vals FROM campaign.records AS c "
            "WHERE NOT EXISTS (SELECT 1 FROM rows AS d WHERE d.key = c.key) ORDER BY c.key"
        )
        for key, group in itertools.groupby(cursor, key=lambda r: r[0]):
            yield key, [(pkey, values) for _, pkey, values in group]

    # -- drifted keys ----------------------------------------------------------------------------------

    def add_drift(self, finding: Finding) -> None:
        self._pending.append((finding.key, finding.source_id, json.dumps(finding.campaign_keys)))
        if len(self._pending) >= _SPILL_BATCH:
            self._flush()

    def _flush(self) -> None:
        self._drift.executemany("INSERT INTO drift VALUES (?, ?, ?)", self._pending)
        self._drift.commit()
        self._pending = []

    def drifted(self) -> Iterator[tuple[str, str, list[str]]]:
        self._flush()
        for key, source_id, pkeys in self._drift.execute("SELECT key, source_id, pkeys FROM drift"):
            yield key, source_id, json.loads(pkeys)
