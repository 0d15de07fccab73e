"""Dataverse Web API requests and the OData `$batch` multipart format.

A `BatchRequest` describes one Web API call; the client sends it alone or many inside one `$batch`.
`build_batch` writes the `multipart/mixed` body (one `application/http` part per request, or one change
set holding them all when atomic) and `parse_batch_response` reads the answer back into one
`BatchResult` per request, in request order.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from requests.structures import CaseInsensitiveDict

from shared.d365.odata import RecordKey, id_from_entity_id, record_path

MAX_BATCH_REQUESTS = 1000
CRLF = "\r\n"
UpsertMode = Literal["upsert", "create_only", "update_only"]

_UPSERT_CONDITIONS: dict[str, dict[str, str]] = {
    "upsert": {},
    "create_only": {"If-None-Match": "*"},
    "update_only": {"If-Match": "*"},
}


@dataclass(frozen=True)
class BatchRequest:
    """One Web API request: method, a path under the API root (or an absolute URL), JSON body, headers."""

    method: str
    url_or_path: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None

    @classmethod
    def create(cls, entity_set: str, body: Mapping[str, Any]) -> BatchRequest:
        return cls("POST", entity_set, body)

    @classmethod
    def update(
        cls, entity_set: str, id: RecordKey, body: Mapping[str, Any], *, if_match: str = "*"
    ) -> BatchRequest:
        # If-Match keeps a PATCH from creating the row when it is missing (a bare PATCH is an upsert).
        return cls("PATCH", record_path(entity_set, id), body, {"If-Match": if_match})

    @classmethod
    def upsert(
        cls,
        entity_set: str,
        key: RecordKey,
        body: Mapping[str, Any],
        *,
        mode: UpsertMode = "upsert",
        id_column: str | None = None,
    ) -> BatchRequest:
        """PATCH by key. Key columns are dropped from the body (Dataverse ignores them on update and
        would create with the body's values, not the URL's). With `id_column`, the answer carries the
        row's id and tells create (201) from update (200), at the price of one extra read."""
        if mode not in _UPSERT_CONDITIONS:
            raise ValueError(f"mode must be one of {sorted(_UPSERT_CONDITIONS)}")
        key_columns = set(key) if isinstance(key, Mapping) else set()
        path = record_path(entity_set, key)
        headers = dict(_UPSERT_CONDITIONS[mode])
        if id_column:
            path += f"?$select={id_column}"
            headers["Prefer"] = "return=representation"
        return cls("PATCH", path, {k: v for k, v in body.items() if k not in key_columns}, headers)

    @classmethod
    def delete(cls, entity_set: str, id: RecordKey) -> BatchRequest:
        return cls("DELETE", record_path(entity_set, id))


@dataclass(frozen=True)
class BatchResult:
    """The answer to one request of a batch. `status` is None when the request never ran because the
    batch stopped at an earlier failure (no `continue_on_error`)."""

    request: BatchRequest
    status: int | None
    headers: Mapping[str, str] = field(default_factory=CaseInsensitiveDict)
    body: Any = None
    error_code: str | None = None
    error_message: str | None = None
    content_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def executed(self) -> bool:
        return self.status is not None

    @property
    def entity_id(self) -> str | None:
        return self.headers.get("OData-EntityId")

    @property
    def id(self) -> str | None:
        return id_from_entity_id(self.entity_id)


@dataclass(frozen=True)
class _Response:
    status: int
    headers: CaseInsensitiveDict
    body: Any
    error_code: str | None
    error_message: str | None
    content_id: str | None


def _absolute(url_or_path: str, api_url: str) -> str:
    if url_or_path.startswith(("http://", "https://")):
        return url_or_path
    return api_url.rstrip("/") + "/" + url_or_path.lstrip("/")


def _http_part(request: BatchRequest, api_url: str, content_id: int | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{request.method.upper()} {_absolute(request.url_or_path, api_url)} HTTP/1.1"]
    headers = {"Content-Type": "application/json; type=entry"} if request.body is not None else {}
    headers.update(request.headers or {})
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["", json.dumps(request.body) if request.body is not None else ""]
    return CRLF.join(lines)


def _multipart(boundary: str, parts: Sequence[str]) -> str:
    return "".join(f"--{boundary}{CRLF}{part}{CRLF}" for part in parts) + f"--{boundary}--{CRLF}"


def build_batch(requests: Sequence[BatchRequest], *, api_url: str, atomic: bool = False) -> tuple[str, bytes]:
    """Return (Content-Type header, body) of a `$batch` POST. Inner request lines carry absolute URLs."""
    if not requests:
        raise ValueError("a batch needs at least one request")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_REQUESTS} requests")
    batch_boundary = f"batch_{uuid.uuid4()}"
    if atomic:
        changeset_boundary = f"changeset_{uuid.uuid4()}"
        inner = _multipart(
            changeset_boundary,
            [_http_part(request, api_url, n) for n, request in enumerate(requests, start=1)],
        )
        parts = [f"Content-Type: multipart/mixed; boundary={changeset_boundary}{CRLF}{CRLF}{inner}"]
    else:
        parts = [_http_part(request, api_url, None) for request in requests]
    body = _multipart(batch_boundary, parts)
    return f"multipart/mixed; boundary={batch_boundary}", body.encode("utf-8")


def boundary_of(content_type: str | None) -> str | None:
    """The boundary of a multipart/mixed Content-Type, or None when it is not one."""
    if not content_type or not content_type.lower().startswith("multipart/mixed"):
        return None
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    return match.group(1).strip() if match else None


def _split_multipart(text: str, boundary: str) -> list[str]:
    """Body parts between `--boundary` delimiter lines; the line break before a delimiter belongs to it."""
    delimiter = re.compile(rf"^--{re.escape(boundary)}(--)?[ \t]*\r?$\n?", re.MULTILINE)
    parts: list[str] = []
    start: int | None = None
    for match in delimiter.finditer(text):
        if start is not None:
            parts.append(re.sub(r"\r?\n\Z", "", text[start : match.start()], count=1))
        if match.group(1):
            break
        start = match.end()
    return parts


def _split_head(text: str) -> tuple[CaseInsensitiveDict, str]:
    """Split `Header: value` lines from what follows the first blank line."""
    match = re.search(r"\r?\n\r?\n", text)
    head, rest = (text[: match.start()], text[match.end() :]) if match else (text, "")
    headers: CaseInsensitiveDict = CaseInsensitiveDict()
    for line in head.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers, rest


def _read_http_response(content: str, content_id: str | None) -> _Response:
    status_line, _, rest = content.lstrip("\r\n").partition("\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise ValueError(f"not an HTTP response line in a batch part: {status_line[:80]!r}") from None
    headers, text = _split_head(rest)
    body: Any = None
    if text.strip():
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
    return _Response(status, headers, body, error.get("code"), error.get("message"), content_id)


def _read_parts(text: str, boundary: str) -> list[list[_Response]]:
    """One entry per top-level part: a single response, or every response of a change set."""
    groups: list[list[_Response]] = []
    for part in _split_multipart(text, boundary):
        headers, content = _split_head(part)
        inner_boundary = boundary_of(headers.get("Content-Type"))
        if inner_boundary:
            groups.append([_read_part(p) for p in _split_multipart(content, inner_boundary)])
        else:
            groups.append([_read_http_response(content, headers.get("Content-ID"))])
    return groups


def _read_part(part: str) -> _Response:
    headers, content = _split_head(part)
    return _read_http_response(content, headers.get("Content-ID"))


def _result(request: BatchRequest, response: _Response) -> BatchResult:
    return BatchResult(
        request=request,
        status=response.status,
        headers=response.headers,
        body=response.body,
        error_code=response.error_code,
        error_message=response.error_message,
        content_id=response.content_id,
    )


def parse_batch_response(
    content_type: str, body: bytes | str, requests: Sequence[BatchRequest], *, atomic: bool = False
) -> list[BatchResult]:
    """Pair each request with its answer. Requests the service did not reach get `status=None`.

    A failed change set answers with the failing request's error instead of one response per request:
    every request of the change set gets that error, since all of them were rolled back."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise ValueError(f"not a multipart batch response: {content_type!r}")
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    groups = _read_parts(text, boundary)
    if atomic:
        responses = groups[0] if groups else []
        failure = next((r for r in responses if r.status >= 400), None)
        if failure is not None:
            return [_result(request, failure) for request in requests]
        by_id = {r.content_id: r for r in responses if r.content_id}
        matched = [by_id.get(str(n)) for n in range(1, len(requests) + 1)] if by_id else list(responses)
    else:
        matched = [group[0] for group in groups]
    results = []
    for n, request in enumerate(requests):
        response = matched[n] if n < len(matched) else None
        results.append(_result(request, response) if response else BatchResult(request=request, status=None))
    return results
