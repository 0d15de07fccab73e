"""What the ingress modules share: record outcomes, write modes, options, a mapping's context, and the
hints a full load passes down to its record writes."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum

from shared.flows import names
from shared.mapping.engine import MappingEngine
from shared.mapping.model import TableMapping
from shared.store import LedgerRecord

FLOW = names.CONTACTS_SYNC
REPLAY_FLOW = names.REPLAY


class Outcome(StrEnum):
    """What became of one record; run reports count them by these names."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"  # Campaign already holds this content: no call
    DELETED = "deleted"
    DELETE_NOT_APPLIED = "delete_not_applied"  # deleted in Dynamics, apply_deletes is off
    EXCLUDED = "excluded"  # outside the mapping's filter
    FILTERED_OUT_DELETED = "filtered_out_deleted"  # left the filter: deleted from Campaign
    DUPLICATE = "duplicate"  # this operation was applied already
    STALE = "stale"  # older than the version applied
    HANDED_OFF = "handed_off"  # another writer holds the record: it applies the newest state
    GONE = "gone"  # a change to a row Dynamics no longer has
    IGNORED = "ignored"  # a table no mapping reads
    FAILED = "failed"  # transient: retried by the timer with backoff
    DEAD = "dead"  # rejected, or out of retries: a dead letter


class Mode(StrEnum):
    """Why a record is written: decides the payload, the shortcuts allowed and whether the row at hand
    was just read from Dynamics."""

    INITIAL = "initial"  # full load: every mapped field
    REPLAY = "replay"  # a requested replay: every mapped field, no "unchanged" shortcut
    DELTA = "delta"  # change tracking after the initial load
    WEBHOOK = "webhook"
    RETRY = "retry"  # a failed record (or an expired lease) retried: the row was just read
    REPAIR = "repair"  # Campaign's state is in doubt: the row was just read, no shortcut

    @property
    def writes_every_field(self) -> bool:
        return self in (Mode.INITIAL, Mode.REPLAY)

    @property
    def row_is_fresh(self) -> bool:
        return self in (Mode.RETRY, Mode.REPAIR)


@dataclass(frozen=True)
class IngressOptions:
    page_size: int = 5000
    time_budget_seconds: float = 480.0
    retry_max_attempts: int = 8
    retry_base_delay_seconds: float = 60.0
    replay_max_rows: int = 2_000_000
    workers: int = 4
    # How long a writer holds a record. A writer that outlives its lease notices at release and repairs
    # the record, so this only bounds how soon a crashed writer's record is retried.
    lease_seconds: float = 300.0


@dataclass
class MappingContext:
    mapping: TableMapping
    engine: MappingEngine
    entity_set: str
    id_column: str


class PageLedgerWrites:
    """The ledger rows of a full-load page that began with an empty ledger, created together when the
    page's records are done (a Table transaction per 100 rows instead of a request per row), before its
    checkpoint. A crash before that loses nothing: the page is redone with `LoadHints.recheck_existing`,
    so its records are looked up in Campaign by key (never created twice) and those another writer
    recorded meanwhile are written again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[LedgerRecord, Outcome]] = []

    def add(self, record: LedgerRecord, outcome: Outcome) -> None:
        with self._lock:
            self._pending.append((record, outcome))

    def take(self) -> list[tuple[LedgerRecord, Outcome]]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending


@dataclass(frozen=True)
class LoadHints:
    """What a full load knows in advance, to save a round trip per record: the Campaign resource and the
    ledger were empty when the load began. Never set for the first pages after a resume (they may be half
    done), and dropped when a record turns out to exist after all (the ledger refuses the duplicate).
    With an empty ledger, the rows are collected in `ledger_writes` and created with the page, without
    taking each record's lease: `recheck_existing` marks a resumed page whose first attempt may have
    written that way, so a record another writer recorded meanwhile is written again."""

    campaign_empty: bool = False
    ledger_empty: bool = False
    ledger_writes: PageLedgerWrites | None = None
    recheck_existing: bool = False


NO_HINTS = LoadHints()
