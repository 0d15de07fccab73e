"""The record ledger: what we last applied to the target for each source record, per mapping.

One Table row per (mapping, source id). It makes every flow idempotent (a stale or duplicate change is
recognised by its version / operation id), keeps Campaign keys so an update costs one call, keeps the
content hash so an unchanged record costs none, and drives retries of failed records.

A row is also the record's write lease (`RecordStatus.WRITING`, `lease`, expiring at `next_attempt_at`):
whoever writes the target for a record holds it, so writes of one record never overlap, and a row never
claims a content (`SYNCED` + `content_hash`) that a later, unfinished write may have replaced. `recheck`
hands work to the lease holder: "the target may not hold the newest source state; read it again before
you let go". A lease left by a crashed writer expires and is picked up like a failed record.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.store.etag import ConcurrentChange, save_entity
from shared.store.keys import decode_key, encode_key

# A mapping's rows are spread over this many partitions by a hash of the source id: one partition per
# mapping would cap its writes at a partition's throughput target (2,000 entities/s) and makes Azurite's
# per-operation cost grow with the partition. Queries over a mapping read the key range of its shards.
SHARDS = 64
_TRANSACTION_ROWS = 100  # the most a Table transaction takes
_TRANSACTION_RESENDS = 2  # a transaction refused for a row in the way is sent again without it
_SHARD_SEPARATOR = "|"  # never in an encoded mapping name (encode_key escapes it)
# A transaction's creates answered 204 without the entity echoed back: a quarter less client CPU per row
# (azure-core parses each part of the answer with the email package) and a third less time per page.
_NO_ECHO = {"response_preference": "return-no-content"}


def partition_key(mapping: str, source_id: str) -> str:
    shard = zlib.crc32(source_id.encode("utf-8")) % SHARDS
    return f"{encode_key(mapping)}{_SHARD_SEPARATOR}{shard:02x}"


def _mapping_range(mapping: str) -> tuple[str, dict[str, Any]]:
    """A filter matching every shard of `mapping` ("}" is the character after the separator)."""
    prefix = encode_key(mapping)
    return "PartitionKey ge @low and PartitionKey lt @high", {
        "low": prefix + _SHARD_SEPARATOR,
        "high": prefix + chr(ord(_SHARD_SEPARATOR) + 1),
    }


class RecordStatus(StrEnum):
    SYNCED = "synced"  # the target holds what the source had at `source_version`
    EXCLUDED = "excluded"  # filtered out (and deleted from the target if the mapping says so)
    DELETED = "deleted"  # deleted in the source and (if apply_deletes) in the target
    FAILED = "failed"  # a transient failure; retried with backoff, dead-lettered after N attempts
    DEAD = "dead"  # the target rejected it, or retries ran out; see the dead-letter store
    WRITING = "writing"  # a writer holds the lease (until next_attempt_at): the target's state is open


class LedgerConflict(ConcurrentChange):
    """Another writer changed this ledger row since we read it."""


@dataclass(frozen=True)
class LedgerRecord:
    mapping: str
    source_id: str
    status: RecordStatus = RecordStatus.SYNCED
    source_version: int | None = None
    source_modified_on: datetime | None = None  # orders changes that carry no version
    content_hash: str | None = None
    target_key: str | None = None
    operation_id: str | None = None
    correlation_id: str | None = None
    error: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    first_failed_at: datetime | None = None
    updated_at: datetime | None = None
    # Values we last wrote to / read from the other side (opt-out echo detection), small JSON.
    extra: dict[str, Any] = field(default_factory=dict)
    lease: str | None = None  # the holder's token while status is WRITING
    recheck: bool = False  # the target may not hold the newest source state: re-read before releasing
    etag: str | None = None

    def evolve(self, **changes: Any) -> LedgerRecord:
        return replace(self, **changes)

    def leased(self, now: datetime) -> bool:
        """A writer holds this record right now (its lease has not expired)."""
        return (
            self.status == RecordStatus.WRITING
            and self.next_attempt_at is not None
            and self.next_attempt_at > now
        )


_INT_FIELDS = ("attempts",)


def _to_entity(record: LedgerRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": partition_key(record.mapping, record.source_id),
        "RowKey": encode_key(record.source_id),
        "status": str(record.status),
        # Strings: Dataverse version numbers outgrow Int32 and the SDK would need explicit EdmTypes.
        "source_version": "" if record.source_version is None else str(record.source_version),
        "content_hash": record.content_hash or "",
        "lease": record.lease or "",
        "recheck": record.recheck,
        "target_key": record.target_key or "",
        "operation_id": record.operation_id or "",
        "correlation_id": record.correlation_id or "",
        "error": (record.error or "")[:8000],
        "attempts": record.attempts,
        "extra": json.dumps(record.extra, default=str) if record.extra else "",
        "updated_at": datetime.now(UTC),
    }
    if record.next_attempt_at is not None:
        entity["next_attempt_at"] = record.next_attempt_at
    if record.first_failed_at is not None:
        entity["first_failed_at"] = record.first_failed_at
    if record.source_modified_on is not None:
        entity["source_modified_on"] = record.source_modified_on
    return entity


def _from_entity(entity: Any) -> LedgerRecord:
    version = entity.get("source_version") or None
    return LedgerRecord(
        mapping=decode_key(entity["PartitionKey"].rpartition(_SHARD_SEPARATOR)[0]),
        source_id=decode_key(entity["RowKey"]),
        status=RecordStatus(entity.get("status", "synced")),
        source_version=int(version) if version is not None else None,
        source_modified_on=entity.get("source_modified_on"),
        content_hash=entity.get("content_hash") or None,
        target_key=entity.get("target_key") or None,
        operation_id=entity.get("operation_id") or None,
        correlation_id=entity.get("correlation_id") or None,
        error=entity.get("error") or None,
        attempts=int(entity.get("attempts") or 0),
        next_attempt_at=entity.get("next_attempt_at"),
        first_failed_at=entity.get("first_failed_at"),
        updated_at=entity.get("updated_at"),
        extra=json.loads(entity["extra"]) if entity.get("extra") else {},
        lease=entity.get("lease") or None,
        recheck=bool(entity.get("recheck")),
        etag=entity.metadata.get("etag"),
    )


class RecordLedger:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, mapping: str, source_id: str) -> LedgerRecord | None:
        try:
            entity = self._table.get_entity(partition_key(mapping, source_id), encode_key(source_id))
            return _from_entity(entity)
        except ResourceNotFoundError:
            return None

    def save(self, record: LedgerRecord) -> LedgerRecord:
        """Write `record`. With an etag (read earlier) the write only succeeds if nobody changed the row
        since; without one it only succeeds if the row does not exist. Either failure: LedgerConflict."""
        entity = _to_entity(record)
        metadata = save_entity(
            self._table,
            entity,
            etag=record.etag,
            conflict=LedgerConflict,
            message=f"ledger row {record.mapping}/{record.source_id} changed concurrently",
        )
        return record.evolve(etag=metadata["etag"], updated_at=entity["updated_at"])

    def update(
        self,
        mapping: str,
        source_id: str,
        change: Callable[[LedgerRecord | None], LedgerRecord | None],
        *,
        read: LedgerRecord | None = None,
        attempts: int = 3,
    ) -> LedgerRecord | None:
        """Read, change, save with the row's ETag; on a concurrent change, again on the fresh row.
        `read`: the row as the caller read it already (saves the first read). Answers the saved record,
        or None when `change` answered None (nothing to write) or the row kept changing."""
        current = read
        for attempt in range(attempts):
            if attempt or read is None:
                current = self.get(mapping, source_id)
            changed = change(current)
            if changed is None:
                return None
            try:
                return self.save(changed)
            except LedgerConflict:
                continue
        return None

    def mark_seen(self, mapping: str, source_ids: Iterable[str]) -> None:
        """Touch these existing rows (their service-side Timestamp becomes now) without changing what they
        say: a full read marks the records Dynamics still has, so the ones left unmarked are known gone.
        Merges in transactions of up to 100 rows of one partition; a row removed meanwhile is skipped."""
        now = datetime.now(UTC)
        by_partition: dict[str, list[str]] = defaultdict(list)
        for source_id in source_ids:
            by_partition[partition_key(mapping, source_id)].append(source_id)
        for partition, ids in by_partition.items():
            for start in range(0, len(ids), _TRANSACTION_ROWS):
                marks = [
                    {"PartitionKey": partition, "RowKey": encode_key(i), "seen_at": now}
                    for i in ids[start : start + _TRANSACTION_ROWS]
                ]
                try:
                    self._table.submit_transaction([("update", m, {"mode": UpdateMode.MERGE}) for m in marks])
                except TableTransactionError:
                    for mark in marks:
                        try:
                            self._table.update_entity(mark, mode=UpdateMode.MERGE)
                        except ResourceNotFoundError:
                            pass

    def unseen_since(self, mapping: str, since: datetime) -> Iterator[LedgerRecord]:
        """Rows not written nor marked since `since` (the storage service's clock) whose record is not
        deleted: after a full read that marked what it saw, the records Dynamics no longer has."""
        query, parameters = _mapping_range(mapping)
        query += " and Timestamp lt @since and status ne @deleted"
        parameters.update(since=since, deleted=str(RecordStatus.DELETED))
        for entity in self._table.query_entities(query, parameters=parameters, results_per_page=1000):
            yield _from_entity(entity)

    def create_many(self, records: Iterable[LedgerRecord]) -> list[LedgerRecord]:
        """Create rows that should not exist yet, in transactions of up to 100 rows of one partition
        (one request instead of one per row). Answers the records whose row existed already (another
        writer was first): those rows are left as they were. One partition after the other: a
        transaction's multipart body is built and parsed in Python, CPU that parallel writers would take
        from the threads writing to Campaign."""
        by_partition: dict[str, list[LedgerRecord]] = defaultdict(list)
        for record in records:
            by_partition[partition_key(record.mapping, record.source_id)].append(record)
        return [r for chunk in by_partition.values() for r in self._create_partition(chunk)]

    def _create_partition(self, records: list[LedgerRecord]) -> list[LedgerRecord]:
        existing: list[LedgerRecord] = []
        for start in range(0, len(records), _TRANSACTION_ROWS):
            chunk = records[start : start + _TRANSACTION_ROWS]
            in_the_way: list[LedgerRecord] = []
            for _ in range(_TRANSACTION_RESENDS + 1):
                if not chunk:
                    break
                try:
                    self._table.submit_transaction([("create", _to_entity(r), _NO_ECHO) for r in chunk])
                    chunk = []
                    break
                except TableTransactionError as exc:
                    # All or nothing: the service names the operation that failed. Set that row aside
                    # and send the others again: a webhook during a load puts a row or two of a page's
                    # transaction in the way, and one by one the whole page took minutes.
                    in_the_way.append(chunk.pop(min(max(exc.index, 0), len(chunk) - 1)))
            for record in in_the_way + chunk:  # many in the way: one by one; each created, or it exists
                try:
                    self._table.create_entity(_to_entity(record))
                except ResourceExistsError:
                    existing.append(record)
        return existing

    def delete(self, mapping: str, source_id: str, *, etag: str | None = None) -> None:
        """Remove the row (nothing happens when it is gone); with `etag`, only if nobody changed it since
        it was read, else LedgerConflict."""
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        try:
            self._table.delete_entity(partition_key(mapping, source_id), encode_key(source_id), **condition)
        except ResourceModifiedError as exc:
            raise LedgerConflict(f"ledger row {mapping}/{source_id} changed concurrently") from exc

    def is_empty(self, mapping: str) -> bool:
        query, parameters = _mapping_range(mapping)
        entities = self._table.query_entities(
            query, parameters=parameters, select=["RowKey"], results_per_page=1
        )
        return next(iter(entities), None) is None

    def iter_records(self, mapping: str, *, status: RecordStatus | None = None) -> Iterator[LedgerRecord]:
        query, parameters = _mapping_range(mapping)
        if status is not None:
            query += " and status eq @status"
            parameters["status"] = str(status)
        for entity in self._table.query_entities(query, parameters=parameters, results_per_page=1000):
            yield _from_entity(entity)

    def due_for_retry(self, mapping: str, *, now: datetime | None = None) -> Iterator[LedgerRecord]:
        """Failed records whose backoff has elapsed and records whose write lease expired (its writer
        stopped mid-write), oldest first within each page."""
        query, parameters = _mapping_range(mapping)
        query += " and ( status eq @failed or status eq @writing ) and next_attempt_at le @now"
        parameters.update(
            failed=str(RecordStatus.FAILED), writing=str(RecordStatus.WRITING), now=now or datetime.now(UTC)
        )
        for entity in self._table.query_entities(query, parameters=parameters, results_per_page=1000):
            yield _from_entity(entity)

    def count_by_status(self, mapping: str) -> dict[str, int]:
        """Counts per status; a streaming scan of the mapping's shards reading only the status column."""
        counts: Counter[str] = Counter({str(s): 0 for s in RecordStatus})
        query, parameters = _mapping_range(mapping)
        entities = self._table.query_entities(
            query, parameters=parameters, select=["status"], results_per_page=1000
        )
        for entity in entities:
            counts[entity.get("status", "synced")] += 1
        return dict(counts)
