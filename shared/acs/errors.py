"""How Adobe's services say what went wrong, read into `shared.http.ErrorInfo`, and the errors that only
the Campaign clients raise.

Three shapes reach us: the Adobe I/O gateway (`{"error_code": "401013", "message": ...}`), IMS
(`{"error": "invalid_client", "error_description": ...}`) and Campaign itself, whose data errors are
mostly HTTP 500 with a body naming `RST-…`/`XTK-…`/`PGS-…` codes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import requests

from shared.errors import ServiceError
from shared.http import ErrorInfo

# The gateway's "OAuth token is not valid": the token expired or was revoked, so refresh it once.
TOKEN_INVALID_CODE = "401013"
# "Profile is not valid": the product is not provisioned for this credential; no retry will fix it.
PRODUCT_NOT_PROVISIONED_CODE = "403023"

# Heads every Campaign data error; the engine's own code (XTK-, PGS-, ...) follows it.
GENERIC_DATA_ERROR_CODE = "RST-360011"
_CAMPAIGN_CODE = re.compile(r"\b(?:RST|XTK|PGS)-\d+\b")
# In the data error a create gets when a record with its identification key exists (PostgreSQL's unique
# index on the key, behind PGS-220000, which heads any database error).
DUPLICATE_KEY_MESSAGE = "duplicate key value violates unique constraint"


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _first_text(body: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def parse_gateway_error(response: requests.Response) -> ErrorInfo:
    """Read an Adobe I/O gateway error (`error_code`), else keep the body's message; status decides."""
    body = _json_object(response)
    message = _first_text(body, "message", "error_description", "title", "detail") or (
        response.text[:500] or response.reason
    )
    error_code = body.get("error_code")
    if error_code is None:
        return ErrorInfo(message=message)
    code = str(error_code)
    return ErrorInfo(
        code=code,
        message=message,
        retriable=False if code == PRODUCT_NOT_PROVISIONED_CODE else None,
        token_expired=code == TOKEN_INVALID_CODE,
    )


def parse_campaign_error(response: requests.Response) -> ErrorInfo:
    """Campaign data errors (a body naming `RST-`/`XTK-`/`PGS-` codes) are final; a bare 500 is transient.

    The code kept is the most specific one: an `error_code` field holding a Campaign code, else the first
    code in the body other than the generic `RST-360011 An error has occurred` that heads every data error.
    """
    info = parse_gateway_error(response)
    # The decoded message first: in raw JSON a newline before a code is a backslash and an "n",
    # which hides the code's word boundary.
    codes = _CAMPAIGN_CODE.findall(info.message or "") or _CAMPAIGN_CODE.findall(response.text)
    if not codes:
        return info
    if info.code is not None and _CAMPAIGN_CODE.fullmatch(info.code):
        code = info.code
    else:
        code = next((c for c in codes if c != GENERIC_DATA_ERROR_CODE), codes[0])
    return ErrorInfo(code=code, message=info.message, retriable=False)


def parse_ims_error(response: requests.Response) -> ErrorInfo:
    """IMS answers OAuth errors: `error` is the code, `error_description` the explanation."""
    body = _json_object(response)
    code = _first_text(body, "error", "error_code")
    message = _first_text(body, "error_description", "message") or response.reason
    return ErrorInfo(code=code, message=message)


class AmbiguousKeyError(ServiceError):
    """A lookup by a key that should be unique found several records: a data problem for a person to fix."""

    def __init__(self, message: str, *, pkeys: list[str], **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.pkeys = pkeys


class JournalPositionExpired(ServiceError):
    """The saved journal position is older than the journal's retention (7 days) or no longer valid.

    Events between that position and the oldest retained one are lost: restart from the oldest
    retained event (`since=None`) and log it loudly.
    """

    def __init__(self, message: str, *, position: str, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.position = position
