"""The Dataverse side of delivering events: the activity tables they go to, and the `$batch` writes.

The tables are read from metadata once per process and checked to hold what the writes need (the
columns, an Active alternate key on the event id); what is missing stops the run with the set-up hint.
Every event is upserted by that key and its follow-up task has a deterministic id and is created once
(`If-None-Match: *`), so writing the same events again is harmless: that is what lets the journal
position be saved only after the writes, and a crash replay the batch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shared.d365.batch import BatchRequest, BatchResult
from shared.d365.client import DataverseClient
from shared.errors import NotFoundError
from shared.flows.events.common import DEAD, PARK, WRITTEN, DeliveryItem
from shared.flows.timeline import ActivityTarget, activity_request, follow_up_request
from shared.mapping.model import EventsConfig
from shared.setup.activities import EVENT_ID_COLUMN, SETUP_HINT, columns_for

_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class EventsSetupError(RuntimeError):
    """Dynamics lacks what the flow writes to (an activity table, a column, the event-id key)."""


class ActivityWriter:
    """Writes the activities of delivered events (and their follow-up tasks) to Dataverse; settles every
    item it writes: written, parked (a transient answer, a missing contact) or dead (a rejected write)."""

    def __init__(
        self,
        *,
        dataverse: DataverseClient,
        events: EventsConfig,
        enabled_types: frozenset[str],
        batch_size: int,
    ) -> None:
        self.dataverse = dataverse
        self.events = events
        self.enabled_types = enabled_types
        self.batch_size = batch_size
        # Read from metadata once per process: entity sets and `regarding` navigation properties.
        self._activities: dict[str, ActivityTarget] | None = None
        self._task: ActivityTarget | None = None

    @property
    def _follow_ups(self) -> bool:
        events = self.events
        return (events.follow_up_task_on_click and "click" in self.enabled_types) or (
            events.fix_address_task_on_bounce and "bounce" in self.enabled_types
        )

    # -- set-up ------------------------------------------------------------------------------------

    def _target(self, table: str, *, event_type: str | None) -> ActivityTarget:
        metadata = self.dataverse.metadata
        try:
            definition = metadata.table_metadata(table)
            regarding = metadata.regarding_navigation_property(table, "contact")
        except NotFoundError as exc:
            raise EventsSetupError(
                f"activity table '{table}' is missing in Dynamics or cannot regard a contact ({exc}); "
                f"{SETUP_HINT}"
            ) from exc
        if event_type is not None:
            wanted = {c.logical_name for c in columns_for(event_type)}
            missing = sorted(wanted - definition.attributes.keys())
            if missing:
                raise EventsSetupError(f"activity table '{table}' lacks the columns {missing}; {SETUP_HINT}")
            keys = [k for k in metadata.alternate_keys(table) if k.key_attributes == (EVENT_ID_COLUMN,)]
            if not keys:
                raise EventsSetupError(
                    f"activity table '{table}' has no alternate key on {EVENT_ID_COLUMN}; {SETUP_HINT}"
                )
            if keys[0].index_status not in (None, "Active"):
                raise EventsSetupError(
                    f"the {EVENT_ID_COLUMN} key of '{table}' is {keys[0].index_status}, not Active yet; "
                    "Dynamics builds it in the background, wait and retry"
                )
        return ActivityTarget(table=table, entity_set=definition.entity_set_name, regarding=regarding)

    def prepare(self) -> None:
        if self._activities is None:
            tables = self.events.activity_tables
            self._activities = {
                kind: self._target(getattr(tables, kind), event_type=kind)
                for kind in sorted(self.enabled_types)
            }
        if self._task is None and self._follow_ups:
            self._task = self._target("task", event_type=None)

    # -- writing -----------------------------------------------------------------------------------

    def _requests(self, item: DeliveryItem) -> list[BatchRequest]:
        """The event's activity upsert, then its follow-up task if the config asks for one."""
        assert self._activities is not None and item.contact_id is not None
        events = self.events
        target = self._activities[item.event.type.value]
        requests = [activity_request(item.event, item.contact_id, target, owner_id=events.owner_id)]
        if self._task is not None:
            task = follow_up_request(item.event, item.contact_id, self._task, events)
            if task is not None:
                requests.append(task)
        return requests

    def write(self, items: list[DeliveryItem], pool: ThreadPoolExecutor) -> None:
        """Send the items' requests in `$batch`es (continue-on-error), several at once. A batch that fails
        as a whole raises: the journal position is not saved and the batch is read again next run."""
        requests: list[BatchRequest] = []
        owners: list[DeliveryItem] = []
        for item in items:
            for request in self._requests(item):
                requests.append(request)
                owners.append(item)
        size = self.batch_size
        futures = [
            pool.submit(self.dataverse.execute_batch, requests[start : start + size], continue_on_error=True)
            for start in range(0, len(requests), size)
        ]
        results = [result for future in futures for result in future.result()]
        for item, result in zip(owners, results, strict=True):
            self._judge(item, result)
        for item in items:
            if item.outcome is None:
                item.outcome = WRITTEN

    @staticmethod
    def _judge(item: DeliveryItem, result: BatchResult) -> None:
        if result.ok:
            return
        create_only = (result.request.headers or {}).get("If-None-Match") == "*"
        if result.status == 412 and create_only:
            return  # the follow-up task exists already: created by an earlier delivery
        detail = {"status": result.status, "code": result.error_code, "message": result.error_message}
        if result.status == 404:
            item.settle(PARK, f"contact {item.contact_id} not found when writing: {result.error_message}")
        elif result.status is None or result.status in _TRANSIENT_STATUSES:
            item.settle(PARK, f"Dataverse answered {result.status}: {result.error_message}", **detail)
        else:
            item.settle(
                DEAD, f"Dataverse rejected the write ({result.status}): {result.error_message}", **detail
            )
