"""The data part of `/api/data/v9.2/`: entity sets (query, paging, change tracking), single rows by id
or alternate key, create / upsert / delete, `$count`, `WhoAmI`; metadata and `$batch` are routed on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import errors
from .errors import ApiError, bad_request, row_not_found, unknown_property, unknown_segment
from .messages import ApiCall, Reply, error_reply, json_reply
from .metadata import Metadata
from .odata import (
    MAX_PAGE_SIZE,
    Segment,
    compile_filter,
    decode_cookie,
    decode_delta_token,
    encode_cookie,
    encode_delta_token,
    parse_key,
    parse_orderby,
    quote_value,
    sort_rows,
    split_path,
    syntax_error,
)
from .payloads import locate, parse_body
from .records import Records
from .representation import Representation, etag
from .schema import Attribute, Schema, Table
from .store import Clock, Store

log = logging.getLogger(__name__)

_QUERY_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$count", "$skiptoken", "$deltatoken", "$expand"}
_NOT_WITH_TRACKING = ("$filter", "$orderby", "$expand", "$top")
# Answers to a delta request with no changes ("An empty JSON response is returned if no table changes
# have occurred after the initial change tracking request was called." - Microsoft's change-tracking page).
EMPTY_DELTA_ANSWERS = ("deltalink", "no_deltalink", "empty_object")
EMPTY_DELTA_RESPONSES = (*EMPTY_DELTA_ANSWERS, "rotate")


class DataApi:
    def __init__(
        self,
        schema: Schema,
        store: Store,
        records: Records,
        representation: Representation,
        metadata: Metadata,
        clock: Clock,
        organization_id: str,
        business_unit_id: str,
    ) -> None:
        self.schema = schema
        self.store = store
        self.records = records
        self.representation = representation
        self.metadata = metadata
        self.clock = clock
        self.organization_id = organization_id
        self.business_unit_id = business_unit_id
        self.change_token_max_age_seconds = 7 * 86400
        self.empty_delta_response = "deltalink"
        self._empty_deltas = 0  # how many "rotate" answers were given
        self.batch: Callable[[ApiCall], Reply] | None = None  # set by the emulator (batch.py)

    @property
    def empty_delta_response(self) -> str:
        """How a delta request with no changes is answered: one of EMPTY_DELTA_RESPONSES."""
        return self._empty_delta_response

    @empty_delta_response.setter
    def empty_delta_response(self, mode: str) -> None:
        if mode not in EMPTY_DELTA_RESPONSES:
            raise ValueError(f"empty_delta_response must be one of {', '.join(EMPTY_DELTA_RESPONSES)}")
        self._empty_delta_response = mode

    def respond(self, call: ApiCall) -> Reply:
        """Handle a call and turn every failure into the error envelope."""
        try:
            return self.handle(call)
        except ApiError as error:
            return error_reply(error)
        except Exception:
            log.exception("emulator failure on %s %s", call.method, call.path)
            return error_reply(ApiError(500, errors.UNEXPECTED, "An unexpected error occurred."))

    def handle(self, call: ApiCall) -> Reply:
        segments = split_path(call.path)
        if not segments or not segments[0].name:
            raise unknown_segment("")
        head = segments[0]
        if head.name == "$batch" and len(segments) == 1 and self.batch is not None:
            if call.method != "POST":
                raise ApiError(405, errors.QUERY_SYNTAX, "$batch requires POST.")
            return self.batch(call)
        if head.name in ("EntityDefinitions", "RelationshipDefinitions"):
            return self.metadata.handle(call, segments)
        if head.name == "WhoAmI" and len(segments) == 1 and call.method == "GET":
            return json_reply(
                200,
                {
                    "@odata.context": f"{call.api_url}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": self.business_unit_id,
                    "UserId": call.caller.user_id,
                    "OrganizationId": self.organization_id,
                },
            )
        table = self.schema.by_set(head.name)
        if table is None:
            raise unknown_segment(head.name)
        self._check_options(call)
        if len(segments) == 2 and segments[1].name == "$count" and head.key is None and call.method == "GET":
            with self.store.lock:
                count = min(self.store.count(table.logical_name), MAX_PAGE_SIZE)
            return Reply(200, [("Content-Type", "text/plain")], str(count).encode())
        if len(segments) > 1:
            raise syntax_error(f"The emulator does not support the path '{call.path}'.")
        if head.key is None:
            if call.method == "GET":
                return self.query(call, table)
            if call.method == "POST":
                return self.create(call, table)
            raise ApiError(
                405, errors.QUERY_SYNTAX, f"The HTTP method '{call.method}' is not allowed on a collection."
            )
        key = parse_key(head.key)
        if call.method == "GET":
            return self.retrieve(call, table, key)
        if call.method == "PATCH":
            return self.upsert(call, table, key)
        if call.method == "DELETE":
            self.records.delete(table, key, call.caller, if_match=call.headers.get("If-Match"))
            return Reply(204)
        raise ApiError(405, errors.QUERY_SYNTAX, f"The HTTP method '{call.method}' is not allowed on a row.")

    # -- helpers ------------------------------------------------------------------------------------------

    @staticmethod
    def _check_options(call: ApiCall) -> None:
        for name in call.args:
            if name == "$skip":
                raise syntax_error("The query parameter $skip is not supported.")
            if name.startswith("$") and name not in _QUERY_OPTIONS:
                raise syntax_error(f"The query parameter {name} is not supported.")

    @staticmethod
    def _select(table: Table, call: ApiCall) -> list[Attribute] | None:
        text = call.args.get("$select")
        if not text:
            return None
        selected = []
        for name in (n.strip() for n in text.split(",")):
            attribute = table.by_odata_name(name) if name else None
            if attribute is None:
                raise unknown_property(name, table.logical_name)
            selected.append(attribute)
        return selected

    @staticmethod
    def _resolver(table: Table) -> Callable[[str], Callable[[dict], Any]]:
        def resolve(name: str) -> Callable[[dict], Any]:
            attribute = table.by_odata_name(name)
            if attribute is None:
                raise unknown_property(name, table.logical_name)
            column = attribute.logical_name
            return lambda row: row.get(column)

        return resolve

    @staticmethod
    def _context(call: ApiCall, table: Table, suffix: str = "") -> str:
        select = call.args.get("$select")
        columns = f"({select})" if select else ""
        return f"{call.api_url}$metadata#{table.entity_set}{columns}{suffix}"

    @staticmethod
    def _link(call: ApiCall, table: Table, **replace: str) -> str:
        """The request's URL with some query options replaced (tokens are opaque, fully encoded)."""
        args = [(k, v) for k, v in call.args.items(multi=True) if k not in replace and k != "$skiptoken"]
        parts = [f"{k}={quote_value(v)}" for k, v in args]
        parts += [f"{k}={quote_value(v, safe='')}" for k, v in replace.items()]
        return f"{call.api_url}{table.entity_set}?{'&'.join(parts)}"

    def _preference_applied(self, call: ApiCall, tracking: bool) -> list[tuple[str, str]]:
        applied = []
        if tracking:
            applied.append("odata.track-changes")
        if call.prefer.max_page_size is not None:
            applied.append(f"odata.maxpagesize={call.prefer.max_page_size}")
        if call.prefer.annotations:
            applied.append(f'odata.include-annotations="{",".join(call.prefer.annotations)}"')
        return [("Preference-Applied", ",".join(applied))] if applied else []

    # -- reads --------------------------------------------------------------------------------------------

    def query(self, call: ApiCall, table: Table) -> Reply:
        cookie = decode_cookie(call.args["$skiptoken"]) if "$skiptoken" in call.args else {}
        tracking = (
            call.prefer.track_changes or "$deltatoken" in call.args or cookie.get("istracking") == "True"
        )
        if tracking:
            for option in _NOT_WITH_TRACKING:
                if option in call.args:
                    raise bad_request(
                        f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.',
                        errors.CHANGE_TRACKING_QUERY,
                    )
            if not table.change_tracking:
                raise bad_request(
                    f"Change tracking is not enabled for the entity '{table.logical_name}'. Set "
                    "ChangeTrackingEnabled to true in its definition first."
                )
        elif "$expand" in call.args:
            raise syntax_error("The Dataverse emulator does not support $expand on rows.")
        page_size = call.prefer.max_page_size or MAX_PAGE_SIZE
        with self.store.lock:
            serialize = self.representation.serializer(table, self._select(table, call), call.prefer)
            if "$deltatoken" in call.args:
                payload = self._delta(call, table, cookie, serialize, page_size)
            else:
                payload = self._page(call, table, cookie, serialize, page_size, tracking)
        return json_reply(200, payload, self._preference_applied(call, tracking))

    def _page(
        self, call: ApiCall, table: Table, cookie: dict, serialize, page_size: int, tracking: bool
    ) -> dict:
        name = table.logical_name
        predicate = (
            compile_filter(call.args["$filter"], self._resolver(table)) if "$filter" in call.args else None
        )
        top = call.args.get("$top")
        if top is not None:
            if not top.isdigit():
                raise syntax_error(f"The value '{top}' of $top is not valid.")
            if call.prefer.max_page_size is None:  # $top is ignored when paging with maxpagesize
                page_size = min(int(top), MAX_PAGE_SIZE)
        page: list[dict] = []
        next_cookie: dict | None = None
        total = None
        if "$orderby" in call.args:
            order = parse_orderby(call.args["$orderby"], self._resolver(table))
            matching = sort_rows(
                [r for _, r in self.store.scan(name) if predicate is None or predicate(r)], order
            )
            offset = int(cookie.get("offset", 0))
            page = matching[offset : offset + page_size]
            total = len(matching)
            if offset + page_size < len(matching):
                next_cookie = {"offset": offset + page_size}
        else:
            for position, row in self.store.scan(name, int(cookie.get("pos", 0))):
                if predicate is not None and not predicate(row):
                    continue
                if len(page) == page_size:
                    next_cookie = {"pos": position}
                    break
                page.append(row)
        if top is not None and call.prefer.max_page_size is None:
            next_cookie = None
        snapshot = int(cookie.get("snap", self.store.version))
        payload: dict = {"@odata.context": self._context(call, table)}
        if call.args.get("$count") == "true":
            if total is None:
                total = sum(1 for _, r in self.store.scan(name) if predicate is None or predicate(r))
            payload["@odata.count"] = min(total, MAX_PAGE_SIZE)
            # Only when asked for (Prefer), as the service does: whether the count stopped at the limit.
            if call.prefer.wants("Microsoft.Dynamics.CRM.totalrecordcount"):
                payload["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(total, MAX_PAGE_SIZE)
            if call.prefer.wants("Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"):
                payload["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = total > MAX_PAGE_SIZE
        payload["value"] = [serialize(r) for r in page]
        if next_cookie is not None:
            page_number = int(cookie.get("pagenumber", 1)) + 1
            extra = {"snap": snapshot, "istracking": "True"} if tracking else {}
            token = encode_cookie(pagenumber=page_number, **next_cookie, **extra)
            payload["@odata.nextLink"] = self._link(call, table, **{"$skiptoken": token})
        elif tracking:
            payload["@odata.deltaLink"] = self._delta_link(call, table, snapshot)
        return payload

    def _delta_link(self, call: ApiCall, table: Table, version: int) -> str:
        token = encode_delta_token(version, self.clock.now())
        select = call.args.get("$select")
        query = f"$select={quote_value(select)}&" if select else ""
        return f"{call.api_url}{table.entity_set}?{query}$deltatoken={quote_value(token, safe='')}"

    def _delta(self, call: ApiCall, table: Table, cookie: dict, serialize, page_size: int) -> dict:
        since, issued = decode_delta_token(call.args["$deltatoken"])
        if since > self.store.version:
            raise ApiError(400, errors.INVALID_VERSION_STAMP, "Invalid version stamp")
        if (self.clock.now() - issued).total_seconds() > self.change_token_max_age_seconds:
            raise ApiError(
                400,
                errors.EXPIRED_VERSION_STAMP,
                "Version stamp associated with the client has expired. Please perform a full sync.",
            )
        snapshot = int(cookie.get("snap", self.store.version))
        phase = cookie.get("phase", "changed")
        start = int(cookie["pos"]) if "pos" in cookie else None
        deleted_context = f"{call.api_url}$metadata#{table.entity_set}/$deletedEntity"
        page: list[dict] = []
        next_cookie = None
        if phase == "changed":
            for position, _, row in self.store.changes(
                table.logical_name, since, start, snapshot, deleted=False
            ):
                if len(page) == page_size:
                    next_cookie = {"phase": "changed", "pos": position}
                    break
                page.append(serialize(row))
            phase, start = "deleted", None
        if next_cookie is None:
            for position, row_id, _ in self.store.changes(
                table.logical_name, since, start, snapshot, deleted=True
            ):
                if len(page) == page_size:
                    next_cookie = {"phase": "deleted", "pos": position}
                    break
                page.append({"@odata.context": deleted_context, "id": row_id, "reason": "deleted"})
        payload: dict = {"@odata.context": self._context(call, table, "/$delta"), "value": page}
        if not page and next_cookie is None and not cookie:  # the whole delta is empty: nothing changed
            mode = self.empty_delta_response
            if mode == "rotate":
                mode = EMPTY_DELTA_ANSWERS[self._empty_deltas % len(EMPTY_DELTA_ANSWERS)]
                self._empty_deltas += 1
            if mode == "no_deltalink":
                return payload
            if mode == "empty_object":
                return {}
        if next_cookie is not None:
            token = encode_cookie(
                pagenumber=int(cookie.get("pagenumber", 1)) + 1,
                snap=snapshot,
                istracking="True",
                **next_cookie,
            )
            payload["@odata.nextLink"] = self._link(call, table, **{"$skiptoken": token})
        else:
            payload["@odata.deltaLink"] = self._delta_link(call, table, snapshot)
        return payload

    def retrieve(self, call: ApiCall, table: Table, key: Any) -> Reply:
        with self.store.lock:
            serialize = self.representation.serializer(table, self._select(table, call), call.prefer)
            row_id = locate(self.store, table, key)
            row = self.store.get(table.logical_name, row_id) if row_id else None
            if row is None:
                raise row_not_found(table.logical_name, key if isinstance(key, str) else str(key))
            if call.headers.get("If-None-Match") == etag(row):
                return Reply(304)
            payload = {"@odata.context": self._context(call, table, "/$entity"), **serialize(row)}
        return json_reply(200, payload, [("ETag", etag(row)), *self._preference_applied(call, False)])

    # -- writes -------------------------------------------------------------------------------------------

    def _written(self, call: ApiCall, table: Table, row_id: str, status: int) -> Reply:
        location = f"{call.api_url}{table.entity_set}({row_id})"
        headers = [("OData-EntityId", location)]
        if not call.prefer.return_representation:
            return Reply(204, headers)
        with self.store.lock:
            serialize = self.representation.serializer(table, self._select(table, call), call.prefer)
            row = self.store.get(table.logical_name, row_id)
            payload = {"@odata.context": self._context(call, table, "/$entity"), **serialize(row)}
        return json_reply(status, payload, [*headers, ("Preference-Applied", "return=representation")])

    def create(self, call: ApiCall, table: Table) -> Reply:
        body = call.json()
        with self.records.atomic():
            values = parse_body(self.schema, self.store, table, body, call.caller)
            row_id, _ = self.records.create(table, values, call.caller)
        return self._written(call, table, row_id, 201)

    def upsert(self, call: ApiCall, table: Table, key: Any) -> Reply:
        row_id, created = self.records.upsert(
            table,
            key,
            call.json(),
            call.caller,
            if_match=call.headers.get("If-Match"),
            if_none_match=call.headers.get("If-None-Match"),
        )
        return self._written(call, table, row_id, 201 if created else 200)


def entity_reference(api_url: str, schema: Schema, location: str) -> tuple[str, str] | None:
    """`<api>contacts(<id>)` -> ("contact", id), for `$n` references in change sets."""
    if not location.startswith(api_url):
        return None
    segments: list[Segment] = split_path(location[len(api_url) :])
    table = schema.by_set(segments[0].name) if len(segments) == 1 and segments[0].key else None
    return (table.logical_name, segments[0].key) if table else None
