"""One request budget per API for the whole deployment, shared by its instances through Table Storage.

Campaign's licence (and Dataverse's service protection) limits the tenant, not one instance, while Flex
Consumption runs as many instances as the load asks for, each with its own client-side limiter
(`shared.ratelimit.RateLimiter`). So each *active* process publishes, about once a second, one row in the
budget table (partition: the API, row: the process): the rate it sent over the last period, the grant
it paces at now, and whether it wanted more (requests waited on its limiter). From the live rows
(written within `stale_after`, by the storage service's clock) every process computes the same max-min
fair split of the total:

- a process that did not want more asks for what it used plus a tenth; one that wanted more and sent
  nearly all of its grant (hungry) asks for everything; one that wanted more without using its grant
  (bursty, like a webhook instance taking batches of deliveries) for half as much again as it sent (at
  least 5% of the total). The total is split max-min fair over the asks: hungry processes share
  equally what the others leave, and a bursty one does not hold a share it cannot use, which nobody
  else could use either; what nobody asked for is shared by all (a burst on a quiet process starts at
  a useful pace);
- and no process is granted more than the total minus the others' published grants (what they may
  send until their next heartbeat), so a newcomer grows as the others give way instead of on top of
  them.

Invariant: the grants computed from one snapshot of the rows sum to at most the total (plus a floor of
one request per second for a process the others leave nothing, so that it still moves); every process
paces its requests at its grant, and a grant never exceeds what the others' rows leave.
Snapshots differ by at most one period between processes, which is what the cap above is for.

A process that has sent nothing for `idle_periods` deletes its row and writes no more, so one busy
process gets the whole total while the others are idle; one that wakes up publishes its row (and reads
the others') before it sends anything. When the table cannot be read or written, a process paces at the
safe static share, total ÷ the most instances the plan may run (`max_instances`), until it can again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.logs import log_event

log = logging.getLogger(__name__)

HEADROOM = 1.1  # a process that did not want more may grow by a tenth per period before it asks
GROWTH = 1.5  # one that wanted more asks for half as much again as it sent...
START = 0.05  # ...and at least this share of the total, so that a newcomer grows fast
FAIR_WAIT_FRACTION = 0.05  # requests waited this share of the period on the limiter: it wanted more
SATURATED = 0.8  # ...and it sent at least this share of its grant: it is hungry
_PURGE_AFTER = timedelta(minutes=2)  # rows of processes that stopped without saying so are deleted
# Per call: the first request after an idle spell waits for one heartbeat, so a slow or absent table
# costs it seconds at most (the ledger's calls would fail then too) before the static share applies.
_STORAGE_TIMEOUT = {"connection_timeout": 2, "read_timeout": 5, "retry_total": 1}


@dataclass(frozen=True)
class Demand:
    """One live process's row: what it sent over the last period and the grant it paces at (and may
    send at until its next heartbeat), in requests/s, and whether it wanted more."""

    process: str
    used: float
    wants_more: bool
    granted: float = 0.0
    # It wanted more and used (nearly) all of its grant: it can use whatever it gets.
    hungry: bool = False


def allocate(total: float, demands: Iterable[Demand], *, floor: float, start: float) -> dict[str, float]:
    """Each process's grant (requests/s): max-min fair over what each asks, within what the others left.
    A hungry process asks for everything (an equal part of what the others leave); one that wanted more
    without using its grant (a webhook instance taking batches of deliveries) for `GROWTH` × what it
    sent, and at least `start`, so it does not hold a share it cannot use, which nobody else could use."""
    demands = list(demands)

    def ask(d: Demand) -> float:
        if d.hungry:
            return total
        return (max(d.used * GROWTH, start) if d.wants_more else d.used * HEADROOM) + floor

    asks = sorted(((d.process, ask(d)) for d in demands), key=lambda item: item[1])
    grants: dict[str, float] = {}
    remaining = total
    for index, (process, asked) in enumerate(asks):
        grants[process] = min(asked, remaining / (len(asks) - index))
        remaining -= grants[process]
    for process in grants:  # what nobody asked for (a burst on a quiet process starts at a useful pace)
        grants[process] += remaining / len(grants)
    committed = sum(d.granted for d in demands)
    for d in demands:
        # What the others may send until their next heartbeat is not free yet: never plan on top of it.
        grants[d.process] = max(floor, min(grants[d.process], total - (committed - d.granted)))
    return grants


class SharedBudget:
    """A process's share of `total_per_second` for one API (`shared.ratelimit.SharedRate` for its limiter).

    :param table: the budget table (`StateStore.budgets`).
    :param api: the partition: one budget per API (e.g. "campaign", "dataverse").
    :param max_instances: the plan's `maximumInstanceCount`; total ÷ it is the fallback share.
    """

    def __init__(
        self,
        table: TableClient,
        *,
        api: str,
        total_per_second: float,
        max_instances: int,
        period_seconds: float = 1.0,
        stale_after_periods: int = 3,
        idle_periods: int = 5,
        process_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total_per_second <= 0 or max_instances < 1:
            raise ValueError("total_per_second must be positive and max_instances at least 1")
        self._table = table
        self.api = api
        self.total = total_per_second
        self.fallback = total_per_second / max_instances
        self.floor = min(1.0, self.fallback)  # a process that waits for its share still moves
        self.period = period_seconds
        self._stale_after = timedelta(seconds=period_seconds * stale_after_periods)
        self._idle_periods = idle_periods
        self.process_id = process_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._grant = self.fallback
        self._sent = 0
        self._waited = 0.0
        self._period_start = clock()
        self._active = False
        self._idle_for = 0
        self._degraded = False
        self._published: tuple[datetime, float] | None = None  # server time of the last write, clock then
        self._stop = threading.Event()

    # -- what the limiter calls ---------------------------------------------------------------------

    def rate(self) -> float:
        """Requests per second this process may send now. The first call after an idle spell publishes
        the row (and reads the others') before it answers, and starts the heartbeat."""
        if not self._active:
            with self._refresh_lock:
                if not self._active:
                    self._heartbeat(wants_more=True, hungry=True)
                    self._active, self._idle_for, self._period_start = True, 0, self._clock()
                    threading.Thread(target=self._beat, name=f"budget-{self.api}", daemon=True).start()
        return self._grant

    def record(self, waited: float) -> None:
        """One request admitted after waiting `waited` seconds for the rate."""
        with self._lock:
            self._sent += 1
            self._waited += waited

    def close(self) -> None:
        """Stop the heartbeat and withdraw this process's row (its share goes back to the others)."""
        self._stop.set()
        self._withdraw()

    # -- the heartbeat ------------------------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stop.wait(self.period):
            with self._lock:
                now = self._clock()
                elapsed = max(now - self._period_start, 1e-6)
                used, waited = self._sent / elapsed, self._waited
                self._sent, self._waited, self._period_start = 0, 0.0, now
            self._idle_for = self._idle_for + 1 if used == 0 else 0
            if self._idle_for >= self._idle_periods:
                with self._refresh_lock:
                    self._active = False
                    self._withdraw()
                return
            with self._refresh_lock:
                wants_more = waited > FAIR_WAIT_FRACTION * elapsed
                hungry = wants_more and used >= SATURATED * self._grant
                self._heartbeat(used=used, wants_more=wants_more, hungry=hungry)

    def _heartbeat(self, *, used: float = 0.0, wants_more: bool, hungry: bool) -> None:
        """Read the live rows, compute this process's grant, publish it with this process's demand, and
        only then pace at it (a lower grant applies at once): the others plan with what it may send."""
        own = Demand(self.process_id, used, wants_more, hungry=hungry)
        try:
            if self._published is None:  # waking up: make this process known before planning
                self._publish(own)
            demands = [d for d in self._live_rows() if d.process != self.process_id]
            grants = allocate(self.total, [*demands, own], floor=self.floor, start=self.total * START)
            grant = grants[self.process_id]
            self._grant = min(self._grant, grant)
            self._publish(Demand(self.process_id, used, wants_more, grant, hungry))
        except (AzureError, KeyError, ValueError) as exc:
            if not self._degraded:
                log_event(
                    log,
                    logging.WARNING,
                    "budget.unavailable",
                    api=self.api,
                    fallback_per_second=round(self.fallback, 2),
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
            self._degraded = True
            self._grant = self.fallback
            return
        if self._degraded:
            log_event(log, logging.INFO, "budget.restored", api=self.api)
        self._degraded = False
        self._grant = grant
        log_event(
            log,
            logging.DEBUG,
            "budget.grant",
            api=self.api,
            per_second=round(grant, 1),
            used=round(used, 1),
            wants_more=wants_more,
            processes=len(demands) + 1,
        )

    def _publish(self, demand: Demand) -> None:
        written = self._table.upsert_entity(
            {
                "PartitionKey": self.api,
                "RowKey": self.process_id,
                "used": float(demand.used),
                "wants_more": demand.wants_more,
                "hungry": demand.hungry,
                "granted": float(demand.granted),
            },
            mode=UpdateMode.REPLACE,
            **_STORAGE_TIMEOUT,
        )
        # The storage service's clock (rows' Timestamps are its), carried forward on this one.
        self._published = (written["date"], self._clock())

    def _live_rows(self) -> list[Demand]:
        written_at, then = self._published
        server_now = written_at + timedelta(seconds=self._clock() - then)
        live = []
        for entity in self._table.query_entities(
            "PartitionKey eq @api", parameters={"api": self.api}, **_STORAGE_TIMEOUT
        ):
            age = server_now - entity.metadata["timestamp"]
            if age > _PURGE_AFTER:
                self._purge(entity["RowKey"])
            elif age <= self._stale_after:
                used, granted = float(entity.get("used") or 0), float(entity.get("granted") or 0)
                wants_more, hungry = bool(entity.get("wants_more")), bool(entity.get("hungry"))
                live.append(Demand(entity["RowKey"], used, wants_more, granted, hungry))
        return live

    def _withdraw(self) -> None:
        self._published = None
        try:
            self._table.delete_entity(self.api, self.process_id, **_STORAGE_TIMEOUT)
        except AzureError:
            pass  # the row goes stale and is ignored, then purged

    def _purge(self, row_key: str) -> None:
        try:
            self._table.delete_entity(self.api, row_key, **_STORAGE_TIMEOUT)
        except (ResourceNotFoundError, AzureError):
            pass
