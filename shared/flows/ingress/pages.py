"""The page pipeline: one mapping's change-tracking read, from its checkpoint, page by page.

- A full read (initial load, replay, resync after an expired delta token) puts a page's records on the
  pool before the previous page's last ones are done, so the pool never drains at a page boundary;
  pages are settled in order (ledger rows created, checkpoint saved) once all their records are done;
  the last page's ledger rows are created as its records finish, so that few are left for after them.
  Delta pages are settled one at a time: a page's deletes must not overtake an earlier page's write.
- A full read into a ledger that was not empty also finds the deletes it cannot see: it marks every
  record it reads (records it writes are marked by the write), and once it has read the last page, the
  records left unmarked since it began are gone from Dynamics and are deleted per the mapping's rules
  (mark and sweep over the ledger, resumable, no second pass over Dynamics). Marks and the start time
  are the storage service's timestamps, so several instances' clocks cannot disagree about them.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.acs.client import CampaignClient
from shared.d365.changetracking import ChangePage, ChangeTrackingReader, DeltaTokenExpired
from shared.d365.client import DataverseClient
from shared.flows.deadline import Deadline
from shared.flows.ingress.common import (
    FLOW,
    NO_HINTS,
    REPLAY_FLOW,
    IngressOptions,
    LoadHints,
    MappingContext,
    Mode,
    Outcome,
    PageLedgerWrites,
)
from shared.flows.ingress.records import RecordWriter
from shared.logs import log_event
from shared.mapping.engine import source_row_from_webapi
from shared.store import Checkpoint, LedgerRecord, RunReport, StateStore
from shared.telemetry.metrics import count_records

log = logging.getLogger(__name__)

_PAGES_IN_FLIGHT = 2  # a full read puts a page's records on the pool while the previous page finishes
# The last load page's ledger rows are created as its records finish, in this many halving portions
# and a rest, instead of all after its last record with the pool idle (seconds per 5,000 rows). Earlier
# pages' rows are created all at once while the next page runs: a transaction costs about as much CPU
# as 13 of its rows, so fewer, fuller ones are cheaper.
_LAST_PAGE_PORTIONS = 4
# Outcomes after which a record's ledger row may be as it was: a full read marks them as seen.
_UNWRITTEN = frozenset(
    {Outcome.UNCHANGED, Outcome.STALE, Outcome.DUPLICATE, Outcome.HANDED_OFF, Outcome.EXCLUDED}
)


def submit(
    pool: ThreadPoolExecutor, tasks: Iterable[Callable[[], Outcome]], deadline: Deadline
) -> tuple[list[Future[Outcome]], bool]:
    """Put record tasks on the pool, stopping when the deadline passes; True if all were put."""
    futures = []
    for task in tasks:
        if deadline.passed():
            return futures, False
        futures.append(pool.submit(contextvars.copy_context().run, task))
    return futures, True


def count(
    futures: list[Future[Outcome]], report: RunReport, *, mapping: str, prefix: str = ""
) -> list[Outcome]:
    """Wait for record tasks and count their outcomes (run report and metric); answers them in order."""
    outcomes = [future.result() for future in futures]
    for name, n in count_records(FLOW, mapping, outcomes).items():
        report.count(f"{prefix}{name}", n)
    return outcomes


def process(
    pool: ThreadPoolExecutor,
    tasks: Iterable[Callable[[], Outcome]],
    report: RunReport,
    deadline: Deadline,
    *,
    mapping: str,
    prefix: str = "",
) -> bool:
    """Run record tasks on the pool; stop submitting when the deadline passes. True if all ran."""
    futures, complete = submit(pool, tasks, deadline)
    count(futures, report, mapping=mapping, prefix=prefix)
    return complete


class PageReadAhead:
    """Change-tracking pages, the next one read from Dataverse in the background once `read_next` is
    called, so that Campaign writes do not wait for Dataverse at a page boundary. The caller calls it once
    the page before the current one is settled: two pages in memory at most."""

    def __init__(self, pages: Iterator[ChangePage], reader: ThreadPoolExecutor) -> None:
        self._pages = pages
        self._reader = reader
        self._context = contextvars.copy_context()  # the run's correlation id, for the reads' log lines
        self._upcoming: Future[ChangePage | None] | None = None

    def read_next(self) -> Future[ChangePage | None]:
        if self._upcoming is None:
            self._upcoming = self._reader.submit(self._context.run, next, self._pages, None)
        return self._upcoming

    def __iter__(self) -> Iterator[ChangePage]:
        while (page := self.read_next().result()) is not None:
            self._upcoming = None
            yield page


@dataclass
class PageInFlight:
    """A page whose record tasks are on the pool. Only what finishing the page needs is kept: its
    links, its hints, the ids of its rows (for the marks of a full read) and the tasks."""

    checkpoint: str | None
    delta_link: str | None
    hints: LoadHints
    futures: list[Future[Outcome]]
    row_ids: list[str] = field(default_factory=list)


class PagesInOrder:
    """The pages of one change-tracking read, settled in page order (`settle_page` answers the checkpoint
    saved after a page): a page held in flight is settled before the next one is."""

    def __init__(self, settle_page: Callable[[PageInFlight, Checkpoint], Checkpoint], checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self._settle_page = settle_page
        self._held: PageInFlight | None = None

    def settle_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self.checkpoint = self._settle_page(held, self.checkpoint)

    def hold(self, page: PageInFlight) -> None:
        self.settle_held()
        self._held = page

    def settle(self, page: PageInFlight) -> None:
        self.settle_held()
        self.checkpoint = self._settle_page(page, self.checkpoint)


class ChangeTrackingRead:
    """Reads one mapping's changes from its checkpoint and applies them through the `RecordWriter`."""

    def __init__(
        self,
        *,
        writer: RecordWriter,
        dataverse: DataverseClient,
        campaign: CampaignClient,
        store: StateStore,
        options: IngressOptions,
    ) -> None:
        self.writer = writer
        self.dataverse = dataverse
        self.campaign = campaign
        self.store = store
        self.options = options

    def run(
        self, ctx: MappingContext, report: RunReport, deadline: Deadline, pool: ThreadPoolExecutor
    ) -> bool:
        """Process change-tracking pages from the checkpoint, then a pending sweep; False when the time
        budget ran out."""
        checkpoint = self._start_state(ctx)
        reader = ChangeTrackingReader(
            self.dataverse, ctx.entity_set, select=ctx.engine.select, page_size=self.options.page_size
        )
        with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as page_reader:
            while True:
                if checkpoint.position is None:
                    checkpoint = self._begin_full_read(ctx, checkpoint)
                mode = Mode(checkpoint.data.get("mode") or Mode.DELTA)
                overlap = mode.writes_every_field
                # After a resume, as many pages as can be in flight at once may be half done.
                half_done = (_PAGES_IN_FLIGHT if overlap else 1) if checkpoint.position is not None else 0
                settle = functools.partial(self._settle_page, ctx, mode, report)
                pages_in_order = PagesInOrder(settle, checkpoint)
                finished = False
                try:
                    pages = PageReadAhead(reader.iter_pages(checkpoint.position), page_reader)
                    for page in pages:
                        hints = self._hints(checkpoint, mode, resumed=half_done > 0)
                        half_done -= 1
                        tasks = [self._row_task(ctx, row, mode, hints) for row in page.upserts]
                        tasks += [functools.partial(self.writer.delete, ctx, i) for i in page.deletes]
                        futures, complete = submit(pool, tasks, deadline)
                        row_ids = [str(row[ctx.id_column]).lower() for row in page.upserts]
                        current = PageInFlight(page.checkpoint, page.delta_link, hints, futures, row_ids)
                        pages_in_order.settle_held()
                        pages.read_next()
                        if not complete:  # the time budget stopped the submission part-way
                            count(futures, report, mapping=ctx.mapping.name)
                            if hints.ledger_writes is not None:
                                self._create_page_ledger(ctx, hints.ledger_writes)
                            return False  # the page is redone next run; its done records are no-ops
                        if overlap and not current.delta_link:
                            pages_in_order.hold(current)
                        else:
                            pages_in_order.settle(current)
                        if deadline.remaining() <= 0:
                            return False
                    finished = True
                except DeltaTokenExpired as exc:
                    log_event(
                        log,
                        logging.WARNING,
                        "ingress.delta_token_expired",
                        mapping=ctx.mapping.name,
                        action="full resync",
                        error=str(exc),
                    )
                    report.notes.append(f"{ctx.mapping.name}: delta token expired; full resync started")
                    report.count("resyncs")
                    pages_in_order.settle_held()
                    pages_in_order.checkpoint = self.store.checkpoints.put(
                        pages_in_order.checkpoint, None, {"mode": None, "sweep_from": None}
                    )
                finally:
                    pages_in_order.settle_held()  # a held page whose records are done is not redone
                checkpoint = pages_in_order.checkpoint
                if finished:
                    break
        return self._sweep(ctx, checkpoint, report, deadline, pool)

    # -- where a read starts -------------------------------------------------------------------------------

    def request_replay(self, mapping_name: str) -> None:
        checkpoints = self.store.checkpoints
        checkpoints.put(checkpoints.get(REPLAY_FLOW, mapping_name), "requested")

    def _start_state(self, ctx: MappingContext) -> Checkpoint:
        """The checkpoint to continue from; a pending replay request restarts the mapping in replay mode."""
        checkpoints = self.store.checkpoints
        current = checkpoints.get(FLOW, ctx.mapping.name)
        request = checkpoints.get(REPLAY_FLOW, ctx.mapping.name)
        if request.position == "requested" and current.data.get("mode") != Mode.REPLAY:
            checkpoints.put(request, "started")
            log_event(log, logging.WARNING, "ingress.replay_started", mapping=ctx.mapping.name)
            return checkpoints.put(
                current,
                None,
                {"mode": Mode.REPLAY, "campaign_empty": False, "ledger_empty": False, "sweep_from": None},
            )
        return current

    def _begin_full_read(self, ctx: MappingContext, checkpoint: Checkpoint) -> Checkpoint:
        """At the start of a full read: what is empty (one call each instead of one per record), and, when
        the ledger holds records already, the time its mark and sweep starts from."""
        checkpoints = self.store.checkpoints
        if checkpoint.data.get("mode") != Mode.REPLAY:
            first_profiles = next(self.campaign.iter_pages(ctx.mapping.acs_resource, line_count=1), [])
            checkpoint = checkpoints.put(
                checkpoint,
                None,
                {
                    "mode": Mode.INITIAL,
                    "campaign_empty": not first_profiles,
                    "ledger_empty": self.store.ledger.is_empty(ctx.mapping.name),
                    "initial_load_started_at": datetime.now(UTC).isoformat(),
                },
            )
        if not checkpoint.data.get("ledger_empty") and not checkpoint.data.get("sweep_from"):
            # The entity's own Timestamp, read back: the service's clock to the microsecond (a write's
            # Date header has whole seconds, which would hide the records written in the same second).
            stored_at = checkpoints.get(checkpoint.flow, checkpoint.stream).stored_at
            checkpoint = checkpoints.put(checkpoint, None, {"sweep_from": stored_at.isoformat()})
        return checkpoint

    @staticmethod
    def _hints(checkpoint: Checkpoint, mode: Mode, *, resumed: bool) -> LoadHints:
        """A resumed page may be half done, and only a full load starts from empty: no shortcuts else."""
        if mode != Mode.INITIAL:
            return NO_HINTS
        ledger_empty = bool(checkpoint.data.get("ledger_empty"))
        if resumed:
            return LoadHints(recheck_existing=ledger_empty)
        return LoadHints(
            campaign_empty=bool(checkpoint.data.get("campaign_empty")),
            ledger_empty=ledger_empty,
            ledger_writes=PageLedgerWrites() if ledger_empty else None,
        )

    # -- finishing a page ----------------------------------------------------------------------------------

    def _settle_page(
        self, ctx: MappingContext, mode: Mode, report: RunReport, page: PageInFlight, checkpoint: Checkpoint
    ) -> Checkpoint:
        """Once a page's records are all done: create the ledger rows it collected (the last page has those
        of its done records created meanwhile), mark the records a full read saw, then save the position
        after the page (and the mode after the last page)."""
        writes = page.hints.ledger_writes
        if writes is not None and page.delta_link:  # the load's last page: nothing runs after it
            total = len(page.futures)
            for portion in range(1, _LAST_PAGE_PORTIONS + 1):
                wait(page.futures[: total - (total >> portion)])
                self._create_page_ledger(ctx, writes)  # the rows of the records done so far
        outcomes = count(page.futures, report, mapping=ctx.mapping.name)
        report.count("pages")
        if writes is not None:
            self._create_page_ledger(ctx, writes)
        if checkpoint.data.get("sweep_from"):
            seen = [i for i, outcome in zip(page.row_ids, outcomes, strict=False) if outcome in _UNWRITTEN]
            self.store.ledger.mark_seen(ctx.mapping.name, seen)
        data: dict[str, Any] = {}
        if page.delta_link:
            data = {"mode": Mode.DELTA, "campaign_empty": False, "ledger_empty": False}
            if mode.writes_every_field:
                data["initial_load_completed_at"] = datetime.now(UTC).isoformat()
                data["sweep_due"], data["sweep_from"] = checkpoint.data.get("sweep_from"), None
                self._finish_replay(ctx)
        return self.store.checkpoints.put(checkpoint, page.checkpoint, data)

    def _create_page_ledger(self, ctx: MappingContext, writes: PageLedgerWrites) -> None:
        """Create the ledger rows a load page collected. A row another writer (a webhook) created meanwhile
        means two writes without a common lease: each such record is repaired before the page is settled,
        several at a time (a webhook burst during a load puts hundreds in the way, and one by one they took
        minutes), and every repair runs even past the time budget: a page settled without it could leave a
        row claiming content the load's own write replaced."""
        pending = {record.source_id: (record, outcome) for record, outcome in writes.take()}
        in_the_way = self.store.ledger.create_many(record for record, _ in pending.values())
        if not in_the_way:
            return
        repair = functools.partial(self._repair_in_the_way, ctx)
        with ThreadPoolExecutor(self.options.workers, thread_name_prefix="repair") as repairs:
            futures = [
                repairs.submit(contextvars.copy_context().run, repair, *pending[existing.source_id])
                for existing in in_the_way
            ]
            for future in futures:
                future.result()

    def _repair_in_the_way(self, ctx: MappingContext, ours: LedgerRecord, outcome: Outcome) -> None:
        """A profile we created twice is removed, and the record is written again under its lease so that
        Campaign ends with the newest state."""
        winner = self.store.ledger.get(ctx.mapping.name, ours.source_id)
        if (
            outcome == Outcome.CREATED
            and winner is not None
            and winner.target_key not in (None, ours.target_key)
        ):
            self.campaign.delete(ctx.mapping.acs_resource, ours.target_key)
            log_event(
                log,
                logging.WARNING,
                "ingress.duplicate_undone",
                mapping=ctx.mapping.name,
                id=ours.source_id,
                pkey=ours.target_key,
            )
        self.writer.resync(ctx, ours.source_id, mode=Mode.REPAIR)

    def _finish_replay(self, ctx: MappingContext) -> None:
        checkpoints = self.store.checkpoints
        request = checkpoints.get(REPLAY_FLOW, ctx.mapping.name)
        if request.etag is not None:
            checkpoints.reset(REPLAY_FLOW, ctx.mapping.name)

    def _sweep(
        self,
        ctx: MappingContext,
        checkpoint: Checkpoint,
        report: RunReport,
        deadline: Deadline,
        pool: ThreadPoolExecutor,
    ) -> bool:
        """The records a finished full read left unmarked are gone from Dynamics: apply their deletion
        (each is read once more first, so a record is never deleted on a mark alone)."""
        due = checkpoint.data.get("sweep_due")
        if not due:
            return True
        unseen = self.store.ledger.unseen_since(ctx.mapping.name, datetime.fromisoformat(due))
        tasks = (functools.partial(self.writer.resync, ctx, entry.source_id) for entry in unseen)
        if not process(pool, tasks, report, deadline, mapping=ctx.mapping.name, prefix="sweep_"):
            return False
        self.store.checkpoints.put(checkpoint, checkpoint.position, {"sweep_due": None})
        log_event(log, logging.INFO, "ingress.sweep_done", mapping=ctx.mapping.name, since=due)
        return True

    def _row_task(
        self, ctx: MappingContext, raw: dict[str, Any], mode: Mode, hints: LoadHints
    ) -> Callable[[], Outcome]:
        row = source_row_from_webapi(raw, id_column=ctx.id_column)
        return lambda: self.writer.sync(ctx, row, mode=mode, hints=hints)
