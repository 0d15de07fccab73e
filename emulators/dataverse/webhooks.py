"""Webhook steps: which registered `sdkmessageprocessingstep`s a change triggers, the
`RemoteExecutionContext` JSON (WCF DataContractJsonSerializer shape) and its delivery: synchronous steps
in the writing request, in order; asynchronous ones as system jobs run by a pool of workers from a
schedule (each job may wait a random delay first, so jobs for one row overtake each other, and a
delivered job is sometimes delivered again later), one more attempt only on 502/503/504, failed async
jobs recorded as `asyncoperation` rows."""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit

import requests

from . import errors
from .errors import ApiError
from .odata import new_guid
from .records import SYSTEM_TARGET_COLUMNS, ChangeEvent, Records
from .representation import Representation
from .schema import BOOLEAN, DATETIME, MONEY, MULTISELECT, PICKLIST, STATE, STATUS, Attribute, Schema, Table
from .store import Clock, Store

log = logging.getLogger(__name__)

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ENTITY, REFERENCE = f"Entity:{CONTRACTS}", f"EntityReference:{CONTRACTS}"
OPTION, MONEY_TYPE = f"OptionSetValue:{CONTRACTS}", f"Money:{CONTRACTS}"
STRING_PAIR = "KeyValuePairOfstringstring:#System.Collections.Generic"
SIZE_LIMIT = 256 * 1024
SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"
RETRIED_STATUSES = frozenset({502, 503, 504})
WEBHOOK_CONTRACT = 8
AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY = 4, 5, 6
MESSAGE_IDS = {  # fixed ids of the sdkmessage rows
    "Create": "9ebdbb1b-ea3e-db11-86a7-000a3a5473e8",
    "Update": "20bebb1b-ea3e-db11-86a7-000a3a5473e8",
    "Delete": "20bdbb1b-ea3e-db11-86a7-000a3a5473e8",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Changes to the plug-in registration itself never trigger steps (not even steps without a table filter).
_REGISTRATION_TABLES = frozenset(
    {
        "serviceendpoint",
        "sdkmessageprocessingstep",
        "sdkmessageprocessingstepimage",
        "sdkmessage",
        "sdkmessagefilter",
        "asyncoperation",
        "systemuser",
    }
)
_PLUGIN_ERROR = (
    "Unexpected exception from plug-in (Execute): Microsoft.Crm.ServiceBus.WebhookPlugin: "
    "System.Net.Http.HttpRequestException: "
)


@dataclass
class Organization:
    id: str
    name: str
    host: str
    business_unit_id: str


@dataclass
class Delivery:
    url: str
    headers: dict[str, str]
    body: bytes
    step_id: str
    step_name: str
    event: ChangeEvent
    duplicate: bool = False
    duplicate_delay: float | None = None  # drawn when scheduled: deliver again this long after success
    attempts: int = 0
    status: int | None = None
    error: str | None = None


@dataclass
class WebhookStats:
    delivered: int = 0
    failed: int = 0
    attempts: int = 0
    duplicates: int = 0
    oversized: int = 0
    pending: int = 0

    def as_dict(self) -> dict:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "attempts": self.attempts,
            "duplicates": self.duplicates,
            "oversized": self.oversized,
            "pending": self.pending,
        }


def wcf_date(value: str | datetime, offset: str = "") -> str:
    """`/Date(<epoch ms>[+-hhmm])/`; stored dates are ISO strings (date-only ones mean midnight UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(
            value.replace("Z", "+00:00") if "T" in value else f"{value}T00:00:00+00:00"
        )
    return f"/Date({(value - _EPOCH) // timedelta(milliseconds=1)}{offset})/"


def auth_settings(xml: str) -> list[tuple[str, str]]:
    """`<settings><setting name="x" value="y" /></settings>` -> [("x", "y")]."""
    root = ElementTree.fromstring(xml)
    if root.tag != "settings":
        raise ValueError("the root element must be <settings>")
    return [(s.attrib["name"], s.attrib.get("value", "")) for s in root.iter("setting")]


def validate_endpoint(row: dict) -> None:
    """Reject webhook registrations the service would reject (missing url or auth value)."""
    if row.get("contract") != WEBHOOK_CONTRACT:
        return
    url, authtype, authvalue = row.get("url"), row.get("authtype"), row.get("authvalue")
    if not url or urlsplit(url).scheme not in ("http", "https"):
        raise errors.bad_request("A webhook service endpoint needs an absolute http(s) url.")
    if authtype not in (AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY):
        raise errors.bad_request(
            "A webhook authtype must be 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString)."
        )
    if not authvalue:
        raise errors.bad_request("The authvalue of a webhook service endpoint is required.")
    if authtype != AUTH_WEBHOOK_KEY:
        try:
            auth_settings(authvalue)
        except (ValueError, KeyError, ElementTree.ParseError):
            raise errors.bad_request(
                'The authvalue must be <settings><setting name="..." value="..." /></settings>.'
            ) from None


def apply_auth(endpoint: dict, headers: dict[str, str]) -> str:
    url, authtype, authvalue = endpoint["url"], endpoint.get("authtype"), endpoint.get("authvalue") or ""
    separator = "&" if urlsplit(url).query else "?"
    if authtype == AUTH_WEBHOOK_KEY:
        return f"{url}{separator}{urlencode({'code': authvalue})}"
    if authtype == AUTH_HTTP_HEADER:
        headers.update(auth_settings(authvalue))
    elif authtype == AUTH_HTTP_QUERY:
        return f"{url}{separator}{urlencode(auth_settings(authvalue))}"
    return url


class Webhooks:
    """Async deliveries are system jobs: `workers` of them in flight at once, each sent after a random
    wait in [0, `max_delay_seconds`] (a heap ordered by due time; idle workers take whatever is due), a
    successful one delivered again with probability `duplicate_rate` after its own random wait.
    The random draws are made when a job is scheduled, from a generator seeded with `seed`, so a given
    sequence of writes gets the same delays and duplicates on every run (the arrival order still depends
    on the threads). `row_version` False sends every `RowVersion` as null, as in the published sample."""

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
        self.representation = representation
        self.clock = clock
        self.organization = organization
        self.duplicate_rate = duplicate_rate  # async jobs are sometimes delivered twice
        self.max_delay_seconds = max_delay_seconds
        self.row_version = row_version  # False: every RowVersion is null
        self.retry_delay_seconds = 1.0
        self.timeout_seconds = 60.0
        self.verify: bool | str = True
        self.stats = WebhookStats()
        self._random = random.Random(seed)
        self._idle = threading.Condition()  # guards stats; notified when pending changes
        self._jobs = threading.Condition()  # guards the schedule, the worker threads and the random draws
        self._schedule: list[tuple[float, int, Delivery]] = []  # (due, sequence, delivery) heap
        self._sequence = itertools.count()
        self._workers = self._check_workers(workers)
        self._threads: dict[int, threading.Thread] = {}
        self._running = False
        self._local = threading.local()

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
            with self._idle:
                self.stats.pending -= dropped
                self._idle.notify_all()

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until every scheduled delivery (delayed ones, retries and duplicates included) is done."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.stats.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    # -- matching and payloads ----------------------------------------------------------------------------

    def dispatch(self, events: list[ChangeEvent]) -> None:
        """Fire the steps the committed events trigger; a failing synchronous step undoes the events and
        fails the request, like an exception in the plug-in pipeline."""
        with self.store.lock:
            planned = [
                (step, self._delivery(event, step, endpoint, images))
                for event in events
                for step, endpoint, images in self._steps_for(event)
            ]
        synchronous = sorted(
            (p for p in planned if p[0].get("mode") == 0), key=lambda p: p[0].get("rank") or 0
        )
        for _, delivery in synchronous:
            self._send(delivery)
            if delivery.error is not None:
                self.records.compensate(events)
                raise ApiError(400, errors.PLUGIN_FAILED, delivery.error)
        for step, delivery in planned:
            if step.get("mode") != 0:
                self._schedule_job(delivery)

    def _steps_for(self, event: ChangeEvent) -> list[tuple[dict, dict, list[dict]]]:
        if event.table in _REGISTRATION_TABLES:
            return []
        matches = []
        message_id = MESSAGE_IDS[event.message]
        for _, step in self.store.scan("sdkmessageprocessingstep"):
            if step.get("statecode", 0) != 0 or (step.get("sdkmessageid") or (None, None))[1] != message_id:
                continue
            sdk_filter = step.get("sdkmessagefilterid")
            if sdk_filter is not None:
                filter_row = self.store.get("sdkmessagefilter", sdk_filter[1])
                if filter_row is None or filter_row.get("primaryobjecttypecode") != event.table:
                    continue
            handler = step.get("eventhandler")
            endpoint = self.store.get("serviceendpoint", handler[1]) if handler else None
            if endpoint is None or endpoint.get("contract") != WEBHOOK_CONTRACT:
                continue
            if event.message == "Update" and step.get("filteringattributes"):
                wanted = {a.strip().lower() for a in step["filteringattributes"].split(",") if a.strip()}
                if not wanted & event.target.keys():
                    continue
            step_id = step["sdkmessageprocessingstepid"]
            images = [
                image
                for _, image in self.store.scan("sdkmessageprocessingstepimage")
                if (image.get("sdkmessageprocessingstepid") or (None, None))[1] == step_id
            ]
            matches.append((step, endpoint, images))
        return matches

    def _value(self, attribute: Attribute, value, *, names: bool):
        if value is None:
            return None
        if attribute.is_lookup:
            return {
                "__type": REFERENCE,
                "Id": value[1],
                "KeyAttributes": [],
                "LogicalName": value[0],
                "Name": self.representation.lookup_name(value) if names else None,
                "RowVersion": None,
            }
        if attribute.type in (PICKLIST, STATE, STATUS):
            return {"__type": OPTION, "Value": value}
        if attribute.type == MULTISELECT:
            return [{"__type": OPTION, "Value": int(v)} for v in value.split(",")]
        if attribute.type == MONEY:
            return {"__type": MONEY_TYPE, "Value": value}
        if attribute.type == DATETIME:
            return wcf_date(value)
        return value

    def _entity(
        self,
        table: Table,
        row_id: str,
        values: dict,
        *,
        typed: bool,
        names: bool,
        version: int | None = None,
        with_versionnumber: bool = False,
    ) -> dict:
        """An Entity; `version` becomes its RowVersion (a string, unless `row_version` is off) and a
        `versionnumber` among the values is kept only when `with_versionnumber` (images)."""
        attributes, formatted = [], []
        for name, value in values.items():
            attribute = table.attributes.get(name)
            if attribute is None or not attribute.readable:
                continue
            if name == "versionnumber" and not with_versionnumber:
                continue
            attributes.append({"key": name, "value": self._value(attribute, value, names=names)})
            if value is not None and attribute.type in (PICKLIST, STATE, STATUS, MULTISELECT, MONEY, BOOLEAN):
                formatted.append({"key": name, "value": self.representation.formatted(attribute, value)})
        entity = {"__type": ENTITY} if typed else {}
        entity.update(
            {
                "Attributes": attributes,
                "EntityState": None,
                "FormattedValues": formatted,
                "Id": row_id,
                "KeyAttributes": [],
                "LogicalName": table.logical_name,
                "RelatedEntities": [],
                "RowVersion": str(version) if version is not None and self.row_version else None,
            }
        )
        return entity

    def _reference(self, event: ChangeEvent) -> dict:
        return {
            "__type": REFERENCE,
            "Id": event.row_id,
            "KeyAttributes": [],
            "LogicalName": event.table,
            "Name": None,
            "RowVersion": None,
        }

    def _images(
        self,
        table: Table,
        event: ChangeEvent,
        images: list[dict],
        kinds: set[int],
        row: dict | None,
        version: int | None,
    ) -> list[dict]:
        """The registered images of one kind; `versionnumber` is an attribute when the image lists it
        (or lists no columns, i.e. all of them)."""
        if row is None:
            return []
        result = []
        for image in images:
            if image.get("imagetype") not in kinds:
                continue
            columns = [c.strip().lower() for c in (image.get("attributes") or "").split(",") if c.strip()]
            values = {name: row.get(name) for name in columns} if columns else dict(row)
            values[table.primary_id] = event.row_id
            entity = self._entity(
                table, event.row_id, values, typed=False, names=True, version=version, with_versionnumber=True
            )
            result.append({"key": image.get("entityalias") or image.get("name") or "Image", "value": entity})
        return result

    def context(self, event: ChangeEvent, step: dict, images: list[dict]) -> dict:
        """The RemoteExecutionContext of one step for one event, key order as the service writes it."""
        table = self.schema.tables[event.table]
        mode, stage = step.get("mode", 1), step.get("stage", 40)
        # The version of THIS operation (the delivery may be built after later writes committed).
        version = event.version
        if version is None and event.post is not None:
            version = event.post.get("versionnumber")
        if event.message == "Delete":
            target = self._reference(event)
            parent_target = target
        else:
            target = self._entity(table, event.row_id, event.target, typed=True, names=False, version=version)
            submitted = {k: v for k, v in event.target.items() if k not in SYSTEM_TARGET_COLUMNS}
            parent_target = self._entity(table, event.row_id, submitted, typed=True, names=False)
        output = [{"key": "id", "value": event.row_id}] if event.message == "Create" else []
        post = self._images(table, event, images, {1, 2}, event.post, version)
        if mode == 1 and not post and event.post is not None and table.primary_name:
            primary = {table.primary_name: event.post.get(table.primary_name), table.primary_id: event.row_id}
            post = [
                {
                    "key": "AsynchronousStepPrimaryName",
                    "value": self._entity(
                        table, event.row_id, primary, typed=False, names=True, version=version
                    ),
                }
            ]
        pre_row = event.pre if event.message != "Create" else None
        pre_version = pre_row.get("versionnumber") if pre_row is not None else None
        pre = self._images(table, event, images, {0, 2}, pre_row, pre_version)
        owning = {
            "Id": step["sdkmessageprocessingstepid"],
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": None,
            "RowVersion": None,
        }
        created_on = wcf_date(self.clock.now(), "+0000")

        def frame(
            stage_: int, inputs: list, outputs: list, post_: list, pre_: list, parent, shared: list
        ) -> dict:
            return {
                "BusinessUnitId": self.organization.business_unit_id,
                "CorrelationId": event.correlation_id,
                "Depth": 1,
                "InitiatingUserId": event.user_id,
                "InputParameters": inputs,
                "IsExecutingOffline": False,
                "IsInTransaction": mode == 0,
                "IsOfflinePlayback": False,
                "IsolationMode": 1 if mode == 1 else 2,
                "MessageName": event.message,
                "Mode": mode,
                "OperationCreatedOn": created_on,
                "OperationId": event.operation_id,
                "OrganizationId": self.organization.id,
                "OrganizationName": self.organization.name,
                "OutputParameters": outputs,
                "OwningExtension": owning,
                "ParentContext": parent,
                "PostEntityImages": post_,
                "PreEntityImages": pre_,
                "PrimaryEntityId": event.row_id,
                "PrimaryEntityName": event.table,
                "RequestId": None if mode == 1 else new_guid(),
                "SecondaryEntityName": "none",
                "SharedVariables": shared,
                "Stage": stage_,
                "UserId": event.user_id,
            }

        parent = None
        if mode == 1:  # async steps carry the main operation's context, as in the published sample
            parent_inputs = [{"key": "Target", "value": parent_target}]
            if event.message != "Delete":
                parent_inputs.append({"key": "SuppressDuplicateDetection", "value": False})
            changed = [
                {
                    "key": "ChangedEntityTypes",
                    "value": [{"__type": STRING_PAIR, "key": event.table, "value": event.message}],
                }
            ]
            parent = frame(30, parent_inputs, output, [], [], None, changed)
        return frame(stage, [{"key": "Target", "value": target}], output, post, pre, parent, [])

    def _delivery(self, event: ChangeEvent, step: dict, endpoint: dict, images: list[dict]) -> Delivery:
        body_dict = self.context(event, step, images)
        headers = {
            "Content-Type": "application/json",
            "x-ms-dynamics-organization": self.organization.host,
            "x-ms-dynamics-entity-name": event.table,
            "x-ms-dynamics-request-name": event.message,
            "x-ms-correlation-request-id": event.correlation_id,
            "x-request-id": new_guid(),
        }
        body = self._serialize(body_dict)
        if len(body) > SIZE_LIMIT:
            for name in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
                body_dict.pop(name, None)
            body = self._serialize(body_dict)
            headers[SIZE_EXCEEDED_HEADER] = "true"
            self._count(oversized=1)
        url = apply_auth(endpoint, headers)
        return Delivery(url, headers, body, step["sdkmessageprocessingstepid"], step.get("name") or "", event)

    @staticmethod
    def _serialize(context: dict) -> bytes:
        # WCF's DataContractJsonSerializer escapes every solidus ("\/Date(...)\/", "http:\/\/...").
        return json.dumps(context, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/").encode()

    # -- delivery -----------------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # loopback receivers; never a proxy
        return session

    def _count(self, **increments: int) -> None:
        with self._idle:
            for name, amount in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + amount)

    def _attempt(self, delivery: Delivery) -> bool:
        """POST once; sets status / error. True when the service would make its one more attempt."""
        delivery.attempts += 1
        self._count(attempts=1)
        try:
            response = self._session().post(
                delivery.url,
                data=delivery.body,
                headers=delivery.headers,
                timeout=self.timeout_seconds,
                verify=self.verify,
            )
        except requests.RequestException as exc:
            delivery.error = f"{_PLUGIN_ERROR}{type(exc).__name__} while sending the request."
            return False
        delivery.status = response.status_code
        response.close()
        if 200 <= response.status_code < 300:
            delivery.error = None
            return False
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = "Unknown"
        status = f"{response.status_code} ({reason})"
        delivery.error = f"{_PLUGIN_ERROR}Response status code does not indicate success: {status}."
        return delivery.attempts == 1 and response.status_code in RETRIED_STATUSES

    def _send(self, delivery: Delivery) -> None:
        """A synchronous step: POST once, and once more only on 502/503/504, inline."""
        if self._attempt(delivery):
            time.sleep(self.retry_delay_seconds)
            self._attempt(delivery)
        self._count(**({"delivered": 1} if delivery.error is None else {"failed": 1}))

    def _delay(self) -> float:
        """A random wait in [0, max_delay_seconds] (holding `_jobs`, which guards the generator)."""
        return self._random.uniform(0, self._max_delay) if self._max_delay > 0 else 0.0

    def _schedule_job(self, delivery: Delivery) -> None:
        """Schedule a new async job: draw its delay and whether (and when) it will be delivered twice."""
        with self._idle:
            self.stats.pending += 1
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
                if self._attempt(delivery):  # 502/503/504: one more attempt, later
                    finished = not self._push(delivery, self.retry_delay_seconds, only_if_running=True)
                    continue
                self._count(**({"delivered": 1} if delivery.error is None else {"failed": 1}))
                if delivery.error is not None:
                    self._record_failure(delivery)
                elif delivery.duplicate_delay is not None:
                    self._count(duplicates=1, pending=1)
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
                        self._count(pending=-1)
            except Exception:  # a worker must survive anything a receiver does
                log.exception("webhook delivery crashed")
            finally:
                if finished:
                    with self._idle:
                        self.stats.pending -= 1
                        self._idle.notify_all()

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
