"""HTTP routing: the identity endpoints, the authenticated Web API under `/api/data/v9.2/` (behind
faults and service protection) and the unauthenticated `/_emulator/` admin surface."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import Any, Protocol

from werkzeug.wrappers import Request, Response

from emulators.common import FaultConfig, FaultInjector, ServerLimit, guarded

from . import errors
from .api import DataApi
from .changes import Caller
from .errors import ApiError
from .identity import Identity
from .messages import ApiCall, Reply, error_reply, json_reply
from .odata import new_guid
from .schema import Schema

API_PREFIX = "/api/data/v9.2/"
ADMIN_PREFIX = "/_emulator/"


class ServedOrganization(Protocol):
    """What the router serves: the parts of `DataverseEmulator` (which composes the router) behind the
    Web API, and its test hooks behind `/_emulator/`."""

    faults: FaultInjector
    limit: ServerLimit
    identity: Identity
    api: DataApi
    schema: Schema
    application_user_id: str

    @property
    def base_url(self) -> str: ...

    @property
    def api_url(self) -> str: ...

    @property
    def authority(self) -> str: ...

    def count_request(self) -> None: ...

    def stats(self) -> dict: ...

    def seed_contacts(self, n: int, *, seed: int = ...) -> list[str]: ...

    def advance_time(self, seconds: float) -> None: ...

    def system_jobs(self) -> list[dict]: ...

    def create_row(self, table: str, attrs: dict[str, Any]) -> str: ...

    def update_row(self, table: str, row_id: str, attrs: dict[str, Any]) -> None: ...

    def delete_row(self, table: str, row_id: str) -> None: ...

    def get_row(self, table: str, row_id: str) -> dict | None: ...


def to_response(reply: Reply, extra: list[tuple[str, str]] = ()) -> Response:
    response = Response(reply.body, status=reply.status, headers=[*reply.headers, *extra])
    if not reply.body and not any(name == "Content-Type" for name, _ in reply.headers):
        del response.headers["Content-Type"]  # empty answers (204, 401) carry no media type
    return response


class Router:
    def __init__(self, emulator: ServedOrganization) -> None:
        self.emulator = emulator

    def wsgi(self):
        e = self.emulator
        return guarded(
            self.handle,
            faults=e.faults,
            limit=e.limit,
            throttled=self.throttled,
            unavailable=self.unavailable,
            exempt=lambda r: not r.path.startswith("/api/"),
        )

    # -- responses ----------------------------------------------------------------------------------------

    def _api_headers(self) -> list[tuple[str, str]]:
        limit = self.emulator.limit
        remaining = limit.remaining_requests()
        request_id = new_guid()
        return [
            ("OData-Version", "4.0"),
            ("REQ_ID", request_id),
            ("x-ms-service-request-id", request_id),
            ("x-ms-ratelimit-burst-remaining-xrm-requests", str(5999 if remaining is None else remaining)),
            ("x-ms-ratelimit-time-remaining-xrm-requests", "1,200,000.00"),
            ("x-ms-dop-hint", str(limit.max_concurrency or 4)),
        ]

    def throttled(self, retry_after: float, reason: str) -> Response:
        limit = self.emulator.limit
        if reason == "concurrency":
            error = ApiError(
                429,
                errors.CONCURRENCY_LIMIT,
                f"Number of concurrent requests exceeded the limit of {limit.max_concurrency or 52}.",
            )
        else:
            error = ApiError(
                429,
                errors.REQUESTS_LIMIT,
                "Number of requests exceeded the limit of "
                f"{limit.max_requests or 6000} over time window of {int(limit.window_seconds)} seconds.",
            )
        retry = str(max(1, math.ceil(retry_after)))
        return to_response(error_reply(error), [("Retry-After", retry), *self._api_headers()])

    def unavailable(self) -> Response:
        error = ApiError(
            503, errors.UNEXPECTED, "The service is temporarily unavailable. Please retry later."
        )
        return to_response(error_reply(error), self._api_headers())

    # -- routing ------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        e = self.emulator
        if request.path.startswith(ADMIN_PREFIX):
            try:
                return to_response(self.admin(request))
            except ApiError as error:
                return to_response(error_reply(error))
        if request.path.startswith(API_PREFIX) or request.path == API_PREFIX.rstrip("/"):
            e.count_request()
            if not e.identity.authenticated(request.headers.get("Authorization")):
                challenge = (
                    f"Bearer authorization_uri={e.authority}/oauth2/authorize, resource_id={e.base_url}/"
                )
                return to_response(Reply(401), [("WWW-Authenticate", challenge), *self._api_headers()])
            path = request.path[len(API_PREFIX) :]
            if not path:
                return to_response(self.service_document(), self._api_headers())
            call = ApiCall(
                request.method,
                path,
                request.args,
                request.headers,
                request.get_data(),
                Caller(e.application_user_id),
                e.api_url,
            )
            return to_response(e.api.respond(call), self._api_headers())
        reply = e.identity.routes(request, e.base_url)
        if reply is None:
            reply = error_reply(errors.unknown_segment(request.path))
        return to_response(reply)

    def service_document(self) -> Reply:
        sets = sorted(t.entity_set for t in self.emulator.schema.tables.values())
        return json_reply(
            200,
            {
                "@odata.context": f"{self.emulator.api_url}$metadata",
                "value": [{"name": s, "kind": "EntitySet", "url": s} for s in sets],
            },
        )

    def admin(self, request: Request) -> Reply:
        e = self.emulator
        parts = [p for p in request.path[len(ADMIN_PREFIX) :].split("/") if p]
        body = json.loads(request.get_data() or b"{}") if request.method in ("POST", "PATCH") else {}
        route = (request.method, *parts[:1])
        if route == ("GET", "stats"):
            return json_reply(200, e.stats())
        if route == ("POST", "seed"):
            ids = e.seed_contacts(int(body.get("contacts", 0)), seed=int(body.get("seed", 1)))
            return json_reply(200, {"created": len(ids)})
        if route == ("POST", "faults"):
            known = {f.name for f in fields(FaultConfig)}
            e.faults.configure(FaultConfig(**{k: v for k, v in body.items() if k in known}))
            return Reply(204)
        if route == ("POST", "advance_time"):
            e.advance_time(float(body.get("seconds", 0)))
            return Reply(204)
        if route == ("GET", "system_jobs"):
            return json_reply(200, {"value": e.system_jobs()})
        if parts[:1] == ["rows"] and len(parts) in (2, 3):
            table = parts[1]
            if request.method == "POST" and len(parts) == 2:
                return json_reply(201, {"id": e.create_row(table, body)})
            if len(parts) == 3 and request.method == "PATCH":
                e.update_row(table, parts[2], body)
                return Reply(204)
            if len(parts) == 3 and request.method == "DELETE":
                e.delete_row(table, parts[2])
                return Reply(204)
            if len(parts) == 3 and request.method == "GET":
                row = e.get_row(table, parts[2])
                if row is None:
                    raise errors.row_not_found(table, parts[2])
                return json_reply(200, row)
        raise errors.unknown_segment(request.path)
