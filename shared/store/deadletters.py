"""Dead letters in Blob storage: a record the target rejected (or that ran out of retries), with the
payload, the error and every attempt, one JSON document per (flow, mapping, record). Operators list,
read and replay them; a successful replay removes the document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.store.keys import encode_key

PREFIX = "deadletters/"


@dataclass
class DeadLetter:
    flow: str
    mapping: str
    record_id: str
    error: dict[str, Any]
    payload: Any = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    correlation_id: str | None = None
    created_at: str = ""
    updated_at: str = ""

    @property
    def blob_name(self) -> str:
        return blob_name(self.flow, self.mapping, self.record_id)


def blob_name(flow: str, mapping: str, record_id: str) -> str:
    return f"{PREFIX}{encode_key(flow)}/{encode_key(mapping)}/{encode_key(record_id)}.json"


class DeadLetterStore:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def put(
        self,
        *,
        flow: str,
        mapping: str,
        record_id: str,
        error: dict[str, Any],
        payload: Any = None,
        correlation_id: str | None = None,
    ) -> DeadLetter:
        """Store (or update) the dead letter for one record; earlier attempts are kept in its history."""
        now = datetime.now(UTC).isoformat()
        letter = self.get(flow, mapping, record_id) or DeadLetter(
            flow, mapping, record_id, error, created_at=now
        )
        letter.error = error
        letter.payload = payload
        letter.correlation_id = correlation_id or letter.correlation_id
        letter.attempts.append({"at": now, **error})
        letter.updated_at = now
        self._container.upload_blob(
            letter.blob_name,
            json.dumps(asdict(letter), default=str),
            overwrite=True,
        )
        return letter

    def get(self, flow: str, mapping: str, record_id: str) -> DeadLetter | None:
        try:
            data = self._container.download_blob(blob_name(flow, mapping, record_id)).readall()
        except ResourceNotFoundError:
            return None
        return DeadLetter(**json.loads(data))

    def iter_letters(self, *, flow: str | None = None, mapping: str | None = None) -> Iterator[DeadLetter]:
        """Stream the dead letters (of one flow / mapping), one blob at a time."""
        prefix = PREFIX
        if flow is not None:
            prefix += encode_key(flow) + "/"
            if mapping is not None:
                prefix += encode_key(mapping) + "/"
        for blob in self._container.list_blobs(name_starts_with=prefix):
            try:
                data = self._container.download_blob(blob.name).readall()
            except ResourceNotFoundError:  # replayed meanwhile
                continue
            yield DeadLetter(**json.loads(data))

    def count(self, *, flow: str | None = None) -> int:
        prefix = PREFIX + (encode_key(flow) + "/" if flow else "")
        return sum(1 for _ in self._container.list_blob_names(name_starts_with=prefix))

    def remove(self, flow: str, mapping: str, record_id: str) -> bool:
        try:
            self._container.delete_blob(blob_name(flow, mapping, record_id))
        except ResourceNotFoundError:
            return False
        return True
