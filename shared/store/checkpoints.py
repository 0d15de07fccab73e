"""Checkpoints per (flow, stream) with ETag optimistic concurrency: two overlapping runs cannot both
advance the same stream; the loser gets `CheckpointConflict` and stops instead of overwriting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.store.etag import ConcurrentChange, save_entity
from shared.store.keys import decode_key, encode_key


class CheckpointConflict(ConcurrentChange):
    """Another run moved this checkpoint since we read it."""


@dataclass(frozen=True)
class Checkpoint:
    flow: str
    stream: str
    position: str | None
    data: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    etag: str | None = None  # None: never saved
    # The storage service's clock at the last save (not this machine's), on a checkpoint read back: what
    # ledger rows' timestamps compare to.
    stored_at: datetime | None = None


class CheckpointStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, flow: str, stream: str) -> Checkpoint:
        """The saved checkpoint, or an empty one (position None, etag None) if there is none yet."""
        try:
            entity = self._table.get_entity(encode_key(flow), encode_key(stream))
        except ResourceNotFoundError:
            return Checkpoint(flow, stream, None)
        return self._from_entity(entity)

    @staticmethod
    def _from_entity(entity) -> Checkpoint:
        return Checkpoint(
            decode_key(entity["PartitionKey"]),
            decode_key(entity["RowKey"]),
            entity.get("position") or None,
            json.loads(entity.get("data") or "{}"),
            entity.get("updated_at"),
            entity.metadata["etag"],
            entity.metadata.get("timestamp"),
        )

    def put(
        self, previous: Checkpoint, position: str | None, data: dict[str, Any] | None = None
    ) -> Checkpoint:
        """Save `position` if the checkpoint is still as `previous` saw it; else raise CheckpointConflict."""
        now = datetime.now(UTC)
        merged = {**previous.data, **(data or {})}
        entity = {
            "PartitionKey": encode_key(previous.flow),
            "RowKey": encode_key(previous.stream),
            "position": position or "",
            "data": json.dumps(merged, default=str),
            "updated_at": now,
        }
        metadata = save_entity(
            self._table,
            entity,
            etag=previous.etag,
            conflict=CheckpointConflict,
            message=f"checkpoint {previous.flow}/{previous.stream} was changed by another run; "
            "this run stops",
        )
        return Checkpoint(previous.flow, previous.stream, position, merged, now, metadata["etag"])

    def reset(self, flow: str, stream: str) -> None:
        # Deleting a missing entity is a no-op in azure-data-tables.
        self._table.delete_entity(encode_key(flow), encode_key(stream))

    def list(self, flow: str | None = None) -> Iterator[Checkpoint]:
        """Every saved checkpoint (of one flow), for the status command."""
        entities = (
            self._table.list_entities()
            if flow is None
            else self._table.query_entities("PartitionKey eq @pk", parameters={"pk": encode_key(flow)})
        )
        for entity in entities:
            yield self._from_entity(entity)
