"""Webhook delivery: which registered steps a committed change triggers (`steps.py`), each with its
`RemoteExecutionContext` (`execution_context.py`): synchronous steps in the writing request, in order;
asynchronous ones as system jobs run by a pool of workers from a schedule (each job may wait a random
delay first, so jobs for one row overtake each other, and a delivered job is sometimes delivered again
later), one more attempt only on 502/503/504 (`delivery.py`), failed async jobs recorded as
`asyncoperation` rows."""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time

from . import errors
from .changes import ChangeEvent
from .delivery import Delivery, Sender, WebhookStats
from .errors import ApiError
from .execution_context import ContextWriter, Organization, serialize
from .odata import new_guid
from .records import Records
from .representation import Representation
from .schema import Schema
from .steps import apply_auth, triggered_steps
from .store import Clock, Store

log = logging.getLogger(__name__)

SIZE_LIMIT = 256 * 1024
SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"


class Webhooks:
    """Async deliveries are system jobs: `workers` of them in flight at once, each sent after a random
    wait in [0, `max_delay_seconds`] (a heap ordered by due time; idle workers take whatever is due), a
    successful one delivered again with probability `duplicate_rate` after its own random wait.
    The random draws are made when a job is scheduled, from a generator seeded with `seed`, so a given
    sequence of writes gets the same delays and duplicates on every run (the arrival order still depends
    on the threads)."""

    def __init__(
        self,
        schema: Schema,
        store: Store,
        records: Records,
        representation: Representation,
        clock: Clock,
        organization: Organization,
        *,
        workers: int = 4,
        max_delay_seconds: float = 0.0,
        duplicate_rate: float = 0.0,
        row_version: bool = True,
        seed: int = 0,
    ) -> None:
        self.schema = schema
        self.store = store
        self.records = records
        self.clock = clock
        self.organization = organization
        self.contexts = ContextWriter(schema, representation, clock, organization, row_version=row_version)
        self.stats = WebhookStats()
        self.sender = Sender(self.stats)
        self.duplicate_rate = duplicate_rate  # async jobs are sometimes delivered twice
        self.max_delay_seconds = max_delay_seconds
        self._random = random.Random(seed)
        self._jobs = threading.Condition()  # guards the schedule, the worker threads and the random draws
        self._schedule: list[tuple[float, int, Delivery]] = []  # (due, sequence, delivery) heap
        self._sequence = itertools.count()
        self._workers = self._check_workers(workers)
        self._threads: dict[int, threading.Thread] = {}
        self._running = False

    # -- settings -----------------------------------------------------------------------------------------

    @staticmethod
    def _check_workers(workers: int) -> int:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"webhook workers must be a positive integer, not {workers!r}")
        return workers

    @property
    def workers(self) -> int:
        """How many async deliveries are in flight at once; can be changed while running (a smaller
        number takes effect as busy workers finish their current delivery)."""
        return self._workers

    @workers.setter
    def workers(self, workers: int) -> None:
        with self._jobs:
            self._workers = self._check_workers(workers)
            self._jobs.notify_all()  # surplus workers leave
            if self._running:
                self._spawn()

    @property
    def max_delay_seconds(self) -> float:
        return self._max_delay

    @max_delay_seconds.setter
    def max_delay_seconds(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the webhook delay cannot be negative")
        self._max_delay = float(seconds)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        with self._jobs:
            self._running = True
            self._spawn()

    def _spawn(self) -> None:
        """Start the missing workers 0..workers-1 (holding `_jobs`)."""
        for number in range(self._workers):
            if number not in self._threads:
                thread = threading.Thread(
                    target=self._work, args=(number,), name=f"dataverse-webhook-{number}", daemon=True
                )
                self._threads[number] = thread
                thread.start()

    def stop(self) -> None:
        """Stop the workers; jobs still waiting for their time are dropped (a delivery in flight is given
        a few seconds to finish)."""
        with self._jobs:
            self._running = False
            dropped = len(self._schedule)
            self._schedule.clear()
            threads = list(self._threads.values())
            self._jobs.notify_all()
        for thread in threads:
            thread.join(timeout=5)
        if dropped:
            self.stats.finish(dropped)

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until every scheduled delivery (delayed ones, retries and duplicates included) is done."""
        return self.stats.wait_idle(timeout)

    # -- firing steps -------------------------------------------------------------------------------------

    def dispatch(self, events: list[ChangeEvent]) -> None:
        """Fire the steps the committed events trigger; a failing synchronous step undoes the events and
        fails the request, like an exception in the plug-in pipeline."""
        with self.store.lock:
            planned = [
                (step, self._delivery(event, step, endpoint, images))
                for event in events
                for step, endpoint, images in triggered_steps(self.store, event)
            ]
        synchronous = sorted(
            (p for p in planned if p[0].get("mode") == 0), key=lambda p: p[0].get("rank") or 0
        )
        for _, delivery in synchronous:
            self.sender.send(delivery)
            if delivery.error is not None:
                self.records.compensate(events)
                raise ApiError(400, errors.PLUGIN_FAILED, delivery.error)
        for step, delivery in planned:
            if step.get("mode") != 0:
                self._schedule_job(delivery)

    def _delivery(self, event: ChangeEvent, step: dict, endpoint: dict, images: list[dict]) -> Delivery:
        body_dict = self.contexts.context(event, step, images)
        headers = {
            "Content-Type": "application/json",
            "x-ms-dynamics-organization": self.organization.host,
            "x-ms-dynamics-entity-name": event.table,
            "x-ms-dynamics-request-name": event.message,
            "x-ms-correlation-request-id": event.correlation_id,
            "x-request-id": new_guid(),
        }
        body = serialize(body_dict)
        if len(body) > SIZE_LIMIT:
            for name in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
                body_dict.pop(name, None)
            body = serialize(body_dict)
            headers[SIZE_EXCEEDED_HEADER] = "true"
            self.stats.add(oversized=1)
        url = apply_auth(endpoint, headers)
        return Delivery(url, headers, body, step["sdkmessageprocessingstepid"], step.get("name") or "", event)

    # -- system jobs --------------------------------------------------------------------------------------

    def _delay(self) -> float:
        """A random wait in [0, max_delay_seconds] (holding `_jobs`, which guards the generator)."""
        return self._random.uniform(0, self._max_delay) if self._max_delay > 0 else 0.0

    def _schedule_job(self, delivery: Delivery) -> None:
        """Schedule a new async job: draw its delay and whether (and when) it will be delivered twice."""
        self.stats.add(pending=1)
        with self._jobs:
            delay = self._delay()
            if not delivery.duplicate and self._random.random() < self.duplicate_rate:
                delivery.duplicate_delay = self._delay()
            self._push(delivery, delay)

    def _push(self, delivery: Delivery, delay: float, *, only_if_running: bool = False) -> bool:
        """Put a job on the schedule, due after `delay` seconds. A retry or duplicate made by a worker
        (`only_if_running`) is dropped once the webhooks are stopped; False then."""
        with self._jobs:
            if only_if_running and not self._running:
                return False
            due = time.monotonic() + delay
            heapq.heappush(self._schedule, (due, next(self._sequence), delivery))
            self._jobs.notify_all()
            return True

    def _next_job(self, number: int) -> Delivery | None:
        """The next due job for worker `number`; None when the worker must leave (stopped, or surplus)."""
        with self._jobs:
            while True:
                if not self._running or number >= self._workers:
                    if self._threads.get(number) is threading.current_thread():
                        del self._threads[number]
                    return None
                if self._schedule:
                    wait = self._schedule[0][0] - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._schedule)[2]
                    self._jobs.wait(wait)
                else:
                    self._jobs.wait()

    def _work(self, number: int) -> None:
        while True:
            delivery = self._next_job(number)
            if delivery is None:
                return
            finished = True
            try:
                if self.sender.attempt(delivery):  # 502/503/504: one more attempt, later
                    finished = not self._push(delivery, self.sender.retry_delay_seconds, only_if_running=True)
                    continue
                self.sender.count_outcome(delivery)
                if delivery.error is not None:
                    self._record_failure(delivery)
                elif delivery.duplicate_delay is not None:
                    self.stats.add(duplicates=1, pending=1)
                    duplicate = Delivery(
                        delivery.url,
                        delivery.headers,
                        delivery.body,
                        delivery.step_id,
                        delivery.step_name,
                        delivery.event,
                        duplicate=True,
                    )
                    if not self._push(duplicate, delivery.duplicate_delay, only_if_running=True):
                        self.stats.add(pending=-1)
            except Exception:  # a worker must survive anything a receiver does
                log.exception("webhook delivery crashed")
            finally:
                if finished:
                    self.stats.finish()

    def _record_failure(self, delivery: Delivery) -> None:
        """A failed async job stays as a system job in state Completed / status Failed."""
        now = self.clock.iso()
        event = delivery.event
        job_id = new_guid()
        row = {
            "asyncoperationid": job_id,
            "name": delivery.step_name,
            "operationtype": 1,
            "statecode": 3,
            "statuscode": 31,
            "message": delivery.error,
            "friendlymessage": "An unexpected error occurred from ISV code.",
            "errorcode": -2147220891,
            "primaryentitytype": event.table,
            "correlationid": event.correlation_id,
            "depth": 1,
            "retrycount": delivery.attempts - 1,
            "createdon": now,
            "modifiedon": now,
            "startedon": now,
            "completedon": now,
            "owningextensionid": ("sdkmessageprocessingstep", delivery.step_id),
            "createdby": ("systemuser", event.user_id),
            "modifiedby": ("systemuser", event.user_id),
            "ownerid": ("systemuser", event.user_id),
        }
        regarding = self.schema.tables["asyncoperation"].attributes["regardingobjectid"]
        if event.table in regarding.targets:
            row["regardingobjectid"] = (event.table, event.row_id)
        self.store.put("asyncoperation", job_id, row)
