"""Run reports in Blob storage: one JSON document per run (flow, start, end, outcome, counts, errors),
plus `latest.json` per flow so the status command reads one blob instead of listing history."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.store.keys import encode_key

PREFIX = "runs/"
MAX_ERRORS = 50


@dataclass
class RunReport:
    flow: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    ended_at: str | None = None
    outcome: str = "running"  # running / succeeded / partial / failed / stopped_for_time
    counts: Counter = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def error(self, **details: Any) -> None:
        """Keep the first MAX_ERRORS errors in full; count the rest."""
        self.counts["errors"] += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(details)

    def finish(self, outcome: str) -> RunReport:
        self.outcome = outcome
        self.ended_at = datetime.now(UTC).isoformat()
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = dict(self.counts)
        return data


class RunReportStore:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def save(self, report: RunReport) -> str:
        body = json.dumps(report.to_dict(), default=str)
        day = report.started_at[:10].replace("-", "/")
        name = f"{PREFIX}{encode_key(report.flow)}/{day}/{report.started_at}-{report.run_id}.json"
        self._container.upload_blob(name, body, overwrite=True)
        self._container.upload_blob(f"{PREFIX}{encode_key(report.flow)}/latest.json", body, overwrite=True)
        return name

    def latest(self, flow: str) -> dict[str, Any] | None:
        try:
            data = self._container.download_blob(f"{PREFIX}{encode_key(flow)}/latest.json").readall()
        except ResourceNotFoundError:
            return None
        return json.loads(data)
