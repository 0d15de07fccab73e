"""One Web API request and its reply, independent of the HTTP server, so `$batch` parts go through
exactly the same handlers as top-level requests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from werkzeug.datastructures import Headers, MultiDict

from .changes import Caller
from .errors import PAYLOAD, ApiError
from .odata import Prefer

JSON_CONTENT_TYPE = "application/json; odata.metadata=minimal"


@dataclass
class ApiCall:
    method: str
    path: str  # after `/api/data/v9.2/`, percent-decoded
    args: MultiDict
    headers: Headers
    body: bytes
    caller: Caller
    api_url: str  # `https://host:port/api/data/v9.2/`

    @cached_property
    def prefer(self) -> Prefer:
        return Prefer.parse(self.headers.getlist("Prefer"))

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise ApiError(400, PAYLOAD, "The request body is not valid JSON.") from None


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def json_reply(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Reply(status, [("Content-Type", JSON_CONTENT_TYPE), *(headers or [])], body)


def error_reply(error: ApiError) -> Reply:
    return json_reply(error.status, error.envelope(), list(error.headers.items()))
