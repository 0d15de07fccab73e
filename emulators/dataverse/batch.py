"""`POST $batch`: multipart/mixed requests and atomic change sets, answered part by part with the
framing Dataverse uses (`batchresponse_<guid>`, nested `changesetresponse_<guid>`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

from werkzeug.datastructures import Headers, MultiDict
from werkzeug.http import parse_options_header

from . import errors
from .api import DataApi, entity_reference
from .changes import Caller
from .errors import ApiError, bad_request
from .messages import ApiCall, Reply, error_reply
from .odata import API_PATH_PREFIX, new_guid
from .records import Records

MAX_REQUESTS = 1000
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


@dataclass
class Part:
    method: str
    target: str
    headers: Headers
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    parts: list[Part] = field(default_factory=list)


def _split_multipart(body: bytes, boundary: str) -> list[tuple[Headers, bytes]]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise bad_request(f"The batch body has no part delimited by '--{boundary}'.")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.lstrip(b"\r\n")
        match = _BLANK_LINE.search(chunk)
        head, content = (chunk[: match.start()], chunk[match.end() :]) if match else (chunk, b"")
        parts.append((_headers(head), content.rstrip(b"\r\n")))
    return parts


def _headers(blob: bytes) -> Headers:
    headers = Headers()
    for line in blob.decode("utf-8").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers.add(name.strip(), value.strip())
    return headers


def _request(blob: bytes, content_id: str | None) -> Part:
    match = _BLANK_LINE.search(blob)
    head, body = (blob[: match.start()], blob[match.end() :]) if match else (blob, b"")
    lines = head.decode("utf-8").splitlines()
    request_line = lines[0].split() if lines else []
    if len(request_line) < 2:
        raise bad_request("A batch part does not start with an HTTP request line.")
    headers = _headers("\n".join(lines[1:]).encode())
    return Part(
        request_line[0].upper(),
        request_line[1],
        headers,
        body.strip(),
        content_id or headers.get("Content-ID"),
    )


def parse_batch(body: bytes, content_type: str) -> list[Part | ChangeSet]:
    kind, options = parse_options_header(content_type)
    if kind != "multipart/mixed" or not options.get("boundary"):
        raise bad_request("A $batch request needs Content-Type: multipart/mixed; boundary=batch_<id>.")
    items: list[Part | ChangeSet] = []
    for headers, content in _split_multipart(body, options["boundary"]):
        part_kind, part_options = parse_options_header(headers.get("Content-Type", ""))
        if part_kind == "multipart/mixed":
            change_set = ChangeSet()
            for inner_headers, inner in _split_multipart(content, part_options.get("boundary", "")):
                change_set.parts.append(_request(inner, inner_headers.get("Content-ID")))
            items.append(change_set)
        elif part_kind == "application/http":
            items.append(_request(content, headers.get("Content-ID")))
        else:
            raise bad_request(f"Unsupported batch part Content-Type '{part_kind}'.")
    return items


def _render(reply: Reply, content_id: str | None) -> bytes:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    status = HTTPStatus(reply.status)
    lines = ["", f"HTTP/1.1 {status.value} {status.phrase}", "OData-Version: 4.0"]
    for name, value in reply.headers:
        if name == "OData-EntityId":
            lines.append(f"Location: {value}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(head + lines) + "\r\n\r\n").encode() + reply.body


class _Abort(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class Batch:
    def __init__(self, api: DataApi, records: Records, charge: Callable[[int], None]) -> None:
        self.api = api
        self.records = records
        self.charge = charge  # inner requests count toward service protection

    def __call__(self, call: ApiCall) -> Reply:
        items = parse_batch(call.body, call.headers.get("Content-Type", ""))
        total = sum(len(i.parts) if isinstance(i, ChangeSet) else 1 for i in items)
        if total > MAX_REQUESTS:
            raise bad_request(
                f"The batch contains {total} requests; the maximum is {MAX_REQUESTS}.", errors.QUERY_SYNTAX
            )
        self.charge(total - 1)
        boundary = f"batchresponse_{new_guid()}"
        rendered: list[bytes] = []
        status = 200
        for item in items:
            if isinstance(item, ChangeSet):
                chunk, failure = self._change_set(call, item)
            else:
                reply = self.api.respond(
                    self._inner(call, item, Caller(call.caller.user_id, call.caller.correlation_id))
                )
                chunk, failure = _render(reply, None), reply.status if reply.status >= 400 else None
            rendered.append(chunk)
            if failure is not None and not call.prefer.continue_on_error:
                status = failure
                break
        body = b"".join(f"--{boundary}\r\n".encode() + chunk + b"\r\n" for chunk in rendered)
        body += f"--{boundary}--\r\n".encode()
        return Reply(status, [("Content-Type", f"multipart/mixed; boundary={boundary}")], body)

    def _inner(self, call: ApiCall, part: Part, caller: Caller) -> ApiCall:
        target = part.target
        reference = re.match(r"^\$(\w+)", target)
        if reference and caller.content_ids is not None:
            entity = caller.content_ids.get(reference.group(1))
            if entity is None:
                raise bad_request(
                    f"Content-ID Reference: '${reference.group(1)}' does not exist in the batch context."
                )
            table = self.api.schema.tables[entity[0]]
            target = f"{table.entity_set}({entity[1]}){target[reference.end() :]}"
        path, _, query = API_PATH_PREFIX.sub("", target).partition("?")
        return ApiCall(
            part.method,
            unquote(path),
            MultiDict(parse_qsl(query, keep_blank_values=True)),
            part.headers,
            part.body,
            caller,
            call.api_url,
        )

    def _change_set(self, call: ApiCall, change_set: ChangeSet) -> tuple[bytes, int | None]:
        """All parts or none: any failure rolls the set back and is the set's only answer."""
        caller = Caller(call.caller.user_id, call.caller.correlation_id, content_ids={})
        answered: list[tuple[str | None, Reply]] = []
        try:
            with self.records.atomic():
                for part in change_set.parts:
                    if part.method == "GET":
                        raise _Abort(
                            error_reply(bad_request("GET requests are not allowed in a change set."))
                        )
                    reply = self.api.respond(self._inner(call, part, caller))
                    if reply.status >= 400:
                        raise _Abort(reply)
                    location = dict(reply.headers).get("OData-EntityId")
                    if part.content_id and location:
                        entity = entity_reference(call.api_url, self.api.schema, location)
                        if entity is not None:
                            caller.content_ids[part.content_id] = entity
                    answered.append((part.content_id, reply))
        except _Abort as abort:
            return _render(abort.reply, None), abort.reply.status
        except ApiError as error:  # a synchronous webhook failed after the set committed (then undone)
            return _render(error_reply(error), None), error.status
        boundary = f"changesetresponse_{new_guid()}"
        inner = b"".join(
            f"--{boundary}\r\n".encode() + _render(reply, cid) + b"\r\n" for cid, reply in answered
        )
        inner += f"--{boundary}--".encode()
        return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode() + inner, None
