"""The backlog in `status`: what the integration has not applied yet, read from Dynamics, the Adobe I/O
Events journal and the ledger.

Per enabled table mapping:
- `changes_waiting`: Dynamics rows modified after the mapping's checkpoint was last saved (one `$count`
  query on `modifiedon`). Dataverse counts up to 5,000: `changes_waiting_more` says there are more
  (shown "≥ 5000"). Before the first load (no checkpoint) every row of the table waits; during a full
  read the position is a paging cookie, not a time, so the count is null. With the webhook on, most of
  these rows were applied by the webhook already: the next timer run confirms them without a Campaign
  call. `modifiedon` has one-second precision and the checkpoint time is this host's clock, so a change
  made within the second the checkpoint was saved is missed here (never a change already read).
- `oldest_unapplied_at` / `oldest_unapplied_seconds`: the older of the earliest `modifiedon` among those
  rows (changes the timer has not read) and the first failure of a record waiting for a retry (ledger
  `failed` rows; `writing` rows whose lease expired, since their lease was taken). Dead records wait
  for an operator, not for the sync: they are counted in `dead` and listed by `deadletters list`.
- `failed`, `dead`: the ledger's counts.

For events: `journal_lag_seconds`, the age of the oldest event not yet read from the journal (one event
read after the saved position; 0 when there is none), and the parked events.

Best effort, so `status` answers while a service is down: every read has a short timeout and no retry,
the first failure of a service leaves the rest of its figures null (one problem line says why), and
nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ServiceError
from shared.flows import names
from shared.flows.events import JOURNAL_STREAM
from shared.flows.ingress import Mode
from shared.http import RetryPolicy, retry_policy
from shared.store import Checkpoint, RecordStatus
from shared.telemetry import metrics
from shared.telemetry.catalog import LAG

if TYPE_CHECKING:
    from shared.d365.client import DataverseClient
    from shared.flows.events import EventsFlow
    from shared.flows.ingress import IngressFlow
    from shared.mapping.model import SyncConfig, TableMapping
    from shared.store import StateStore


class BacklogSources(Protocol):
    """What the backlog reads (the app: `shared.app.App`, which calls `record_lag` after its runs)."""

    config: SyncConfig
    store: StateStore
    dataverse: DataverseClient
    ingress: IngressFlow
    events: EventsFlow


# (connect, read) seconds: a status page must answer while Dynamics or Campaign is slow or down.
TIMEOUT = (3.0, 10.0)
_NO_RETRY = RetryPolicy(total=0)


def utc_time(value: Any) -> datetime | None:
    """A stored time (datetime or ISO text) as an aware UTC datetime; None when absent or unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def odata_time(value: datetime) -> str:
    """A UTC DateTimeOffset literal for `$filter` (milliseconds: Dataverse keeps them)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BacklogReader:
    """Reads the backlog of one `status` call; `problems` collects why a figure is unknown."""

    def __init__(self, app: BacklogSources, now: datetime) -> None:
        self.app = app
        self.now = now
        self.problems: list[str] = []
        self._dataverse_failed = False

    @contextmanager
    def _best_effort(self) -> Iterator[None]:
        with retry_policy(_NO_RETRY):
            yield

    def _seconds(self, since: datetime | None) -> int | None:
        return None if since is None else max(0, int((self.now - since).total_seconds()))

    # -- table mappings ---------------------------------------------------------------------------------

    def table(self, mapping: TableMapping, checkpoint: Checkpoint, counts: dict[str, int]) -> dict[str, Any]:
        waiting = self._unread_changes(mapping, checkpoint) if mapping.enabled else None
        retry_since = self._oldest_retry(mapping.name, counts)
        unread_since = utc_time((waiting or {}).get("oldest_modified_on"))
        oldest = min((t for t in (unread_since, retry_since) if t is not None), default=None)
        if waiting is not None:  # the figure is whole: Dynamics answered
            metrics.record(LAG, self._seconds(oldest) or 0, flow=names.CONTACTS_SYNC, mapping=mapping.name)
        return {
            "changes_waiting": None if waiting is None else waiting["count"],
            "changes_waiting_more": None if waiting is None else waiting["more"],
            "changes_since": None if waiting is None else waiting["since"],
            "oldest_unapplied_at": oldest.isoformat() if oldest else None,
            "oldest_unapplied_seconds": self._seconds(oldest),
            "failed": counts[str(RecordStatus.FAILED)],
            "dead": counts[str(RecordStatus.DEAD)],
        }

    def _unread_changes(self, mapping: TableMapping, checkpoint: Checkpoint) -> dict[str, Any] | None:
        """The rows modified since the checkpoint (every row before the first load), as counted by
        Dataverse, with the earliest `modifiedon`; None when unknown."""
        if checkpoint.etag is not None and checkpoint.data.get("mode") != Mode.DELTA:
            return None  # a full read is in progress or next: its position is not a time
        if self._dataverse_failed:
            return None
        since = utc_time(checkpoint.updated_at) if checkpoint.etag is not None else None
        try:
            with self._best_effort():
                entity_set = self.app.ingress.context(mapping).entity_set
                counted = self.app.dataverse.count_rows(
                    entity_set,
                    filter=f"modifiedon gt {odata_time(since)}" if since else None,
                    select="modifiedon",
                    orderby="modifiedon asc",
                    timeout=TIMEOUT,
                )
        except ServiceError as exc:
            self._dataverse_failed = True
            self.problems.append(f"contacts_sync: changes waiting in Dynamics unknown: {exc}")
            return None
        first = counted.first or {}
        return {
            "count": counted.count,
            "more": counted.more,
            "since": since.isoformat() if since else None,
            "oldest_modified_on": first.get("modifiedon"),
        }

    def _oldest_retry(self, mapping_name: str, counts: dict[str, int]) -> datetime | None:
        """Since when the oldest record waiting for a retry has waited (from the ledger)."""
        ledger = self.app.store.ledger
        since: list[datetime] = []
        if counts[str(RecordStatus.FAILED)]:
            for entry in ledger.iter_records(mapping_name, status=RecordStatus.FAILED):
                if (at := utc_time(entry.first_failed_at or entry.updated_at)) is not None:
                    since.append(at)
        if counts[str(RecordStatus.WRITING)]:
            for entry in ledger.iter_records(mapping_name, status=RecordStatus.WRITING):
                expired = not entry.leased(self.now)
                if expired and (at := utc_time(entry.first_failed_at or entry.updated_at)) is not None:
                    since.append(at)
        return min(since, default=None)

    # -- events -------------------------------------------------------------------------------------------

    def journal(self, position: str | None, *, enabled: bool) -> dict[str, Any]:
        """How far the events flow is behind the journal: whether an event waits after `position`, and
        the age of the oldest one waiting (0 when none; null when unknown, or when it has no time)."""
        lag: dict[str, Any] = {
            "journal_caught_up": None,
            "journal_lag_seconds": None,
            "oldest_unread_event_at": None,
        }
        if not enabled:
            return lag
        try:
            with self._best_effort():
                unread = self.app.events.journal.peek(position, timeout=TIMEOUT)
        except (ServiceError, ValueError) as exc:  # ValueError: the journal is not configured
            self.problems.append(f"events_push: journal lag unknown: {exc}")
            return lag
        at = None if unread is None else utc_time(unread.timestamp)
        if unread is None or at is not None:
            metrics.record(LAG, self._seconds(at) or 0, flow=names.EVENTS_PUSH, mapping="")
        if unread is None:
            return {**lag, "journal_caught_up": True, "journal_lag_seconds": 0}
        return {
            "journal_caught_up": False,
            "journal_lag_seconds": self._seconds(at),
            "oldest_unread_event_at": at.isoformat() if at else None,
        }


def record_lag(app: BacklogSources, flow: str) -> None:
    """After a timer run, the lag metric of its streams, so the lag alert has a point every run whether
    or not anything asks for the status: for `contacts_sync`, per enabled mapping, the age of the oldest
    change Dynamics holds that the run has not read (one `$count`; the status adds the records waiting
    for a retry, which needs a ledger scan); for `events_push`, the journal lag (one event read)."""
    reader = BacklogReader(app, datetime.now(UTC))
    if flow == names.CONTACTS_SYNC:
        no_retries = {str(RecordStatus.FAILED): 0, str(RecordStatus.WRITING): 0, str(RecordStatus.DEAD): 0}
        for mapping in app.config.tables:
            if mapping.enabled:
                reader.table(mapping, app.store.checkpoints.get(flow, mapping.name), no_retries)
    elif flow == names.EVENTS_PUSH:
        reader.journal(app.store.checkpoints.get(flow, JOURNAL_STREAM).position, enabled=True)
