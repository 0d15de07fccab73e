"""The Campaign Standard REST API (`/<tenant>/campaign/...`) behind the Adobe I/O gateway checks."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from werkzeug.wrappers import Request, Response

from .ims import TokenIssuer
from .metadata import MetadataView
from .responses import campaign_error, gateway_error, json_response
from .schema import DataError, Filter, Resource
from .store import Condition, Order, Store, not_found, since_value

DEFAULT_LINE_COUNT = 25
STANDARD = "profileAndServices"
EXTENDED = "profileAndServicesExt"
UNLINKED = "customResources"


def check_gateway(request: Request, tokens: TokenIssuer) -> Response | None:
    """The Adobe I/O gateway's checks every API call passes first: the API key, then the bearer token."""
    if request.headers.get("X-Api-Key") != tokens.client_id:
        return gateway_error(403, "403000", "Api Key is invalid")
    if not tokens.is_valid(request.headers.get("Authorization")):
        return gateway_error(401, "401013", "Oauth token is not valid")
    return None


class CampaignApi:
    def __init__(
        self,
        *,
        store: Store,
        tokens: TokenIssuer,
        tenant: str,
        big_table_threshold: int,
        max_line_count: int,
        wrap_single_records: bool = False,
    ) -> None:
        self.store = store
        self.metadata = MetadataView()
        # Adobe's docs show a GET by PKey answered bare and as {"content": [record]}: serve either.
        self.wrap_single_records = wrap_single_records
        self.tokens = tokens
        self.prefix = f"/{tenant}/campaign/"
        self.big_table_threshold = big_table_threshold
        self.max_line_count = max_line_count

    def handle(self, request: Request) -> Response:
        rejected = check_gateway(request, self.tokens)
        if rejected is not None:
            return rejected
        segments = [part for part in request.path[len(self.prefix) :].split("/") if part]
        try:
            return self._route(request, segments)
        except DataError as error:
            return campaign_error(error)

    # -- routing --------------------------------------------------------------------------------------

    def _route(self, request: Request, segments: list[str]) -> Response:
        base = request.host_url.rstrip("/") + self.prefix.rstrip("/")
        if len(segments) in (3, 4) and segments[0] in (STANDARD, EXTENDED) and segments[1] == "resourceType":
            resource = self._resource(segments[0], segments[2])
            wants_filters = segments[3:] == ["filters"]
            if resource is None or request.method != "GET" or (len(segments) == 4 and not wants_filters):
                return _unsupported(request)
            self.store.count_call(resource.name, "read")
            if wants_filters:
                return json_response(self.metadata.describe_filters(resource, segments[0]))
            return json_response(self._describe(resource, base, segments[0]))
        if len(segments) < 2:
            return _unsupported(request)
        endpoint, name, rest = segments[0], segments[1], segments[2:]
        resource = self._resource(endpoint, name)
        if resource is None:
            return _unsupported(request)
        collection = f"{base}/{endpoint}/{name}"
        view = _View(resource, collection, base, extended=endpoint != STANDARD)
        if not rest:
            if request.method == "GET":
                return self._list(request, view, [])
            if request.method == "POST":
                return self._create(request, view)
            return _not_allowed()
        if all(part in resource.filters for part in rest[:-1]) and (
            rest[-1] in resource.filters or rest[-1] == "_count"
        ):
            if request.method != "GET":
                return _not_allowed()
            return self._list(request, view, rest)
        if rest == ["metadata"] and request.method == "GET":  # the description's own `href`
            self.store.count_call(resource.name, "read")
            return json_response(self._describe(resource, base, endpoint))
        if len(rest) == 1:
            return self._item(request, view, rest[0])
        return _unsupported(request)

    def _resource(self, endpoint: str, name: str) -> Resource | None:
        table = self.store.tables.get(name)
        if table is None:
            return None
        resource = table.resource
        if endpoint == STANDARD:
            return resource if name == "profile" else None
        if endpoint == EXTENDED:
            return resource if name == "profile" or resource.linked else None
        if endpoint == UNLINKED:
            return resource if name != "profile" and not resource.linked else None
        return None

    # -- operations -----------------------------------------------------------------------------------

    def _list(self, request: Request, view: _View, path_filters: list[str]) -> Response:
        resource = view.resource
        self.store.count_call(resource.name, "read")
        args = request.args
        conditions = self._conditions(resource, path_filters, args)
        if path_filters and path_filters[-1] == "_count":
            return json_response({"count": self.store.count(resource.name, conditions)})
        limit = self._line_count(args.get("_lineCount"))
        order = _order(args.get("_order"))
        rows, next_cursor = self.store.query(resource.name, conditions, order, args.get("_lineStart"), limit)
        path = "/".join([view.collection, *path_filters])
        kept = [(k, v) for k, v in args.items(multi=True) if k != "_lineStart"]
        count_query = urlencode([(k, v) for k, v in kept if k != "_lineCount"], quote_via=quote)
        body: dict[str, Any] = {
            "content": [view.render(row) for row in rows],
            "count": {"href": f"{path}/_count" + (f"?{count_query}" if count_query else "")},
            "serverSidePagination": False,
        }
        forced = args.get("_forcePagination", "").lower() == "true"
        big = len(self.store.tables[resource.name]) > self.big_table_threshold
        # Campaign leaves `next` out on big tables unless the caller forces pagination.
        if next_cursor is not None and (forced or not big):
            body["next"] = {
                "href": f"{path}?{urlencode([*kept, ('_lineStart', next_cursor)], quote_via=quote)}"
            }
        return json_response(body)

    def _create(self, request: Request, view: _View) -> Response:
        self.store.count_call(view.resource.name, "insert")
        values = view.resource.validate(_json_body(request), extended=view.extended)
        row = self.store.create(view.resource.name, values)
        return json_response(view.render(row), 201)

    def _item(self, request: Request, view: _View, key: str) -> Response:
        resource = view.resource
        kind = {"GET": "read", "PATCH": "update", "DELETE": "delete"}.get(request.method)
        if kind is None:
            return _not_allowed()
        self.store.count_call(resource.name, kind)
        row = self._find(resource, key)
        if request.method == "GET":
            rendered = view.render(row)
            return json_response({"content": [rendered]} if self.wrap_single_records else rendered)
        if request.method == "DELETE":
            self.store.delete(resource.name, row["PKey"])
            return Response(status=200)
        values = resource.validate(_json_body(request), extended=view.extended)
        row = self.store.update(resource.name, row["PKey"], values)
        return json_response({"PKey": row["PKey"], "href": view.href(row["PKey"])})

    def _find(self, resource: Resource, key: str) -> dict[str, Any]:
        """By PKey, or by the identification key value (Campaign's "custom key" URLs)."""
        if key.startswith("@"):
            row = self.store.get(resource.name, key)
        elif resource.key:
            row = self.store.get_by_key(resource.name, key)
        else:
            row = None
        if row is None:
            raise not_found(resource, key)
        return row

    # -- parameters -----------------------------------------------------------------------------------

    def _conditions(self, resource: Resource, path_filters: list[str], args) -> list[Condition]:
        conditions: list[Condition] = []
        for name in path_filters:
            if name == "_count":
                continue
            spec: Filter = resource.filters[name]
            value = args.get(spec.param, "")
            conditions.append((spec, since_value(value) if spec.kind == "since" else value))
        return conditions

    def _line_count(self, text: str | None) -> int:
        if text is None:
            return DEFAULT_LINE_COUNT
        if not text.isdigit() or int(text) < 1:
            raise DataError("RST-360011", f"Invalid value '{text}' for parameter '_lineCount'.")
        return min(int(text), self.max_line_count)

    # -- metadata -------------------------------------------------------------------------------------

    def _describe(self, resource: Resource, base: str, endpoint: str) -> dict[str, Any]:
        with self.store.lock:
            written = sorted(self.store.tables[resource.name].custom_fields)
        return self.metadata.describe(resource, base, endpoint, written)


class _View:
    """How one endpoint shows a resource: its hrefs and whether `cus*` fields are visible."""

    def __init__(self, resource: Resource, collection: str, base: str, *, extended: bool) -> None:
        self.resource = resource
        self.collection = collection
        self.base = base
        self.extended = extended

    def href(self, pkey: str) -> str:
        return f"{self.collection}/{pkey}"

    def render(self, row: dict[str, Any]) -> dict[str, Any]:
        fields = self.resource.fields
        shown: dict[str, Any] = {}
        for name, value in row.items():
            if not self.extended and name.startswith("cus"):
                continue
            spec = fields.get(name)
            if spec is not None and spec.kind == "link":
                target = f"{self.base}/{EXTENDED}/{spec.target}/{value}"
                shown[name] = None if value is None else {"PKey": value, "href": target}
            else:
                shown[name] = value
        shown["href"] = self.href(row["PKey"])
        return shown


def _order(text: str | None) -> Order | None:
    if not text:
        return None
    parts = text.split()
    if len(parts) == 2 and parts[1].lower() in ("asc", "desc"):
        return parts[0], parts[1].lower() == "desc"
    if len(parts) == 1:
        return parts[0], False
    raise DataError("RST-360011", f"Invalid value '{text}' for parameter '_order'.")


def _json_body(request: Request) -> Any:
    body = request.get_json(silent=True, force=True)
    if body is None:
        raise DataError("RST-360011", "The request body is not valid JSON.", status=400)
    return body


def _unsupported(request: Request) -> Response:
    return campaign_error(
        DataError("RST-360011", f"Unsupported endpoint. (endpoint={request.path})", status=404)
    )


def _not_allowed() -> Response:
    return campaign_error(DataError("RST-360011", "Method not allowed on this resource.", status=405))
