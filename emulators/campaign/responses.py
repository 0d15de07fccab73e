"""Response bodies in the shapes Adobe's services answer with."""

from __future__ import annotations

import itertools
import json
import math
import uuid
from typing import Any

from werkzeug.wrappers import Response

from .schema import DataError

CAMPAIGN_ERROR_PREFIX = "RST-360011 An error has occurred - please contact your administrator."


Headers = dict[str, str] | list[tuple[str, str]] | None


def json_response(body: Any, status: int = 200, headers: Headers = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def gateway_error(
    status: int, error_code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The Adobe I/O gateway's answer (before the request reaches Campaign): `{"error_code", "message"}`."""
    return json_response({"error_code": error_code, "message": message}, status, headers)


def campaign_error(error: DataError) -> Response:
    """Campaign's data error: the message chains the generic RST-360011 line and the engine's detail."""
    body = {
        "code": error.status,
        "error_code": error.code,
        "message": f"{CAMPAIGN_ERROR_PREFIX}\n{error.detail}",
        "logId": str(uuid.uuid4()),
    }
    return json_response(body, error.status)


def throttled(retry_after: float, reason: str) -> Response:
    seconds = max(1, math.ceil(retry_after))
    return gateway_error(429, "429050", f"Too many requests ({reason})", {"Retry-After": str(seconds)})


class Unavailable:
    """Injected server faults, alternating the two answers an overloaded Adobe gateway gives."""

    def __init__(self) -> None:
        self._calls = itertools.count(1)

    def __call__(self) -> Response:
        if next(self._calls) % 2:
            return gateway_error(503, "503000", "Service Unavailable")
        return gateway_error(502, "502000", "Bad Gateway")
