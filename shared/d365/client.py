"""Dataverse (Dynamics 365) Web API client: paging, single-row reads and writes, upserts by alternate
key, `$batch`, on top of `shared.http.ApiPipeline` (retries, Retry-After, limiter, token refresh)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from shared.d365.batch import (
    MAX_BATCH_REQUESTS,
    BatchRequest,
    BatchResult,
    UpsertMode,
    boundary_of,
    build_batch,
    parse_batch_response,
)
from shared.d365.metadata import MetadataClient
from shared.d365.odata import (
    COUNT_ANNOTATIONS,
    FORMATTED_VALUES,
    MAX_PAGE_SIZE,
    RecordKey,
    id_from_entity_id,
    max_page_size,
    query_string,
    record_path,
)
from shared.errors import ConflictError, PreconditionFailedError, ServiceError
from shared.http import ApiPipeline, ErrorInfo, RetryPolicy, TokenProvider, new_session
from shared.ratelimit import RateLimiter, SharedRate

SERVICE = "dataverse"
DEFAULT_HEADERS = {
    "OData-Version": "4.0",
    "OData-MaxVersion": "4.0",
    "Accept": "application/json",
    "Content-Type": "application/json; charset=utf-8",
}
# Service protection limits: number of requests, combined execution time, concurrent requests.
THROTTLING_CODES = frozenset({"0x80072322", "0x80072321", "0x80072326"})
DELTA_TOKEN_EXPIRED_CODE = "0x80044352"


def parse_error(response: requests.Response) -> ErrorInfo:
    """Read Dataverse's `{"error": {"code", "message"}}` envelope."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") or None
    message = error.get("message") or response.text[:500] or response.reason
    status = response.status_code
    if code and code.lower() in THROTTLING_CODES:
        retriable: bool | None = True
    elif code and code.lower() == DELTA_TOKEN_EXPIRED_CODE:
        # Whatever the status, only a full resync fixes an expired change-tracking token.
        retriable = False
    elif 400 <= status < 500 and status not in (401, 408, 429):
        retriable = False
    else:
        retriable = None
    return ErrorInfo(code=code, message=message, retriable=retriable)


@dataclass(frozen=True)
class Page:
    """One page of rows; `next_link` to continue, `delta_link` on the last page of a tracked query."""

    rows: list[dict[str, Any]]
    next_link: str | None = None
    delta_link: str | None = None


@dataclass(frozen=True)
class RowCount:
    """Rows matching a query as Dataverse counts them: at most 5,000, `more` when there are more; and
    the first of them in the query's order."""

    count: int
    more: bool
    first: dict[str, Any] | None = None


@dataclass(frozen=True)
class UpsertResult:
    """`created` is None when Dataverse did not say (a plain upsert without `id_column`); `id` is None
    when the answer named the row by its alternate key only."""

    created: bool | None
    id: str | None
    entity_id: str | None = field(default=None, repr=False)


class DataverseClient:
    """Client for one Dataverse organisation (`org_url` like `https://contoso.crm.dynamics.com`).

    Errors are `shared.errors` types: `NotFoundError`, `ConflictError`, `PreconditionFailedError`,
    `RequestRejectedError`, `ThrottledError` (after the retry budget), `ConnectionFailedError`,
    `AuthenticationError`; `code` carries Dataverse's `0x8004....` code.
    """

    def __init__(
        self,
        *,
        org_url: str,
        token_provider: TokenProvider,
        api_version: str = "v9.2",
        timeout: tuple[float, float] = (5.0, 60.0),
        requests_per_second: float | None = None,
        shared_rate: SharedRate | None = None,
        max_concurrency: int = 8,
        retry: RetryPolicy | None = None,
        ca_bundle: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.org_url = org_url.rstrip("/")
        self.api_url = f"{self.org_url}/api/data/{api_version}/"
        if session is None:
            # One pooled connection per allowed concurrent request, so none is opened and discarded.
            session = new_session(pool_size=max(10, max_concurrency))
        self.pipeline = ApiPipeline(
            service=SERVICE,
            base_url=self.api_url,
            token_provider=token_provider,
            default_headers=DEFAULT_HEADERS,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            limiter=RateLimiter(
                requests_per_second=requests_per_second, max_concurrency=max_concurrency, shared=shared_rate
            ),
            error_parser=parse_error,
            session=session,
            verify=ca_bundle,
        )
        self.metadata = MetadataClient(self.pipeline)

    def close(self) -> None:
        self.pipeline.session.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(
        self, request: BatchRequest, *, idempotent: bool | None = None, ok_statuses: Iterable[int] = ()
    ) -> requests.Response:
        """Send one `BatchRequest` on its own (outside a `$batch`)."""
        return self.pipeline.request(
            request.method,
            request.url_or_path,
            headers=request.headers,
            json=request.body,
            idempotent=idempotent,
            ok_statuses=ok_statuses,
        )

    # Reads

    def read_page(self, url_or_path: str, *, prefer: Iterable[str] = ()) -> Page:
        """GET one page (a query, or a next/delta link followed unchanged)."""
        preferences = ",".join(prefer)
        response = self.pipeline.request(
            "GET", url_or_path, headers={"Prefer": preferences} if preferences else None
        )
        payload = response.json()
        return Page(
            rows=payload.get("value", []),
            next_link=payload.get("@odata.nextLink"),
            delta_link=payload.get("@odata.deltaLink"),
        )

    def iter_pages(
        self,
        entity_set: str,
        *,
        select: str | Iterable[str] | None = None,
        filter: str | None = None,
        page_size: int = 5000,
        annotations: bool = False,
    ) -> Iterator[Page]:
        """Yield pages of `entity_set`, following `@odata.nextLink` with the same Prefer header.
        `annotations=True` adds formatted values (`<column>@OData.Community.Display.V1.FormattedValue`)."""
        prefer = [max_page_size(page_size)] + ([FORMATTED_VALUES] if annotations else [])
        link: str | None = entity_set + query_string(select=select, filter=filter)
        while link:
            page = self.read_page(link, prefer=prefer)
            yield page
            link = page.next_link

    def count_rows(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: str | Iterable[str] | None = None,
        orderby: str | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> RowCount:
        """`$count=true` on a one-row page: how many rows match `filter`, and the first in `orderby`
        order. Dataverse counts up to 5,000: `more` comes from its `totalrecordcountlimitexceeded`
        annotation, or, when it sends none, from a count at that limit."""
        response = self.pipeline.request(
            "GET",
            entity_set + query_string(select=select, filter=filter, orderby=orderby, count=True),
            headers={"Prefer": f"{max_page_size(1)},{COUNT_ANNOTATIONS}"},
            timeout=timeout,
        )
        payload = response.json()
        count = int(payload.get("@odata.count") or 0)
        more = payload.get("@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded")
        rows = payload.get("value") or []
        return RowCount(
            count=count,
            more=bool(more) if more is not None else count >= MAX_PAGE_SIZE,
            first=rows[0] if rows else None,
        )

    def get(
        self,
        entity_set: str,
        id: RecordKey,
        *,
        select: str | Iterable[str] | None = None,
        annotations: bool = False,
    ) -> dict[str, Any] | None:
        """One row by id (or alternate key dict); None when it does not exist."""
        response = self.pipeline.request(
            "GET",
            record_path(entity_set, id) + query_string(select=select),
            headers={"Prefer": FORMATTED_VALUES} if annotations else None,
            ok_statuses=(404,),
        )
        return None if response.status_code == 404 else response.json()

    # Writes

    def create(self, entity_set: str, body: Mapping[str, Any]) -> str:
        """Create a row and return its id. Not resent after a lost answer (ConnectionFailedError with
        `may_have_applied=True`): the caller reconciles, e.g. by alternate key."""
        response = self.send(BatchRequest.create(entity_set, body))
        row_id = id_from_entity_id(response.headers.get("OData-EntityId"))
        if row_id is None:
            raise ServiceError(f"POST {entity_set}: no OData-EntityId in the answer", service=SERVICE)
        return row_id

    def update(self, entity_set: str, id: RecordKey, body: Mapping[str, Any], *, if_match: str = "*") -> None:
        """PATCH an existing row: NotFoundError when missing, PreconditionFailedError on an etag mismatch."""
        # Setting the same values twice is harmless; resending after a lost answer with a specific etag
        # would report a false 412, so only `*` is resent.
        self.send(BatchRequest.update(entity_set, id, body, if_match=if_match), idempotent=if_match == "*")

    def upsert(
        self,
        entity_set: str,
        key: RecordKey,
        body: Mapping[str, Any],
        *,
        mode: UpsertMode = "upsert",
        id_column: str | None = None,
    ) -> UpsertResult:
        """Create or update by key. `create_only` raises ConflictError when the row exists, `update_only`
        NotFoundError when it does not. Pass the primary id column as `id_column` to learn the row id
        and whether it was created (costs one extra read on the server)."""
        request = BatchRequest.upsert(entity_set, key, body, mode=mode, id_column=id_column)
        try:
            # A resent create_only would meet its own row and report a false conflict.
            response = self.send(request, idempotent=mode != "create_only")
        except PreconditionFailedError as exc:
            if mode != "create_only":
                raise
            raise ConflictError(
                f"{exc.message} (row already exists)",
                status=exc.status,
                code=exc.code,
                service=exc.service,
                body=exc.body,
            ) from exc
        entity_id = response.headers.get("OData-EntityId")
        row_id = id_from_entity_id(entity_id)
        created = {"create_only": True, "update_only": False}.get(mode)
        if response.status_code in (200, 201):
            created = response.status_code == 201
            if id_column:
                row_id = response.json().get(id_column) or row_id
        return UpsertResult(created=created, id=row_id, entity_id=entity_id)

    def delete(self, entity_set: str, id: RecordKey, *, missing_ok: bool = True) -> bool:
        """Delete a row; False when it was already gone (NotFoundError instead if not `missing_ok`)."""
        response = self.send(BatchRequest.delete(entity_set, id), ok_statuses=(404,) if missing_ok else ())
        return response.status_code != 404

    # $batch

    def execute_batch(
        self,
        requests: Sequence[BatchRequest],
        *,
        continue_on_error: bool = True,
        atomic: bool = False,
        idempotent: bool | None = None,
    ) -> list[BatchResult]:
        """Run requests through `$batch` and return one result per request, in order.

        More than 1,000 requests are sent as several batches (ValueError when `atomic`, since a change
        set cannot span batches). Without `continue_on_error` Dataverse stops at the first failure;
        requests after it get `status=None`, including those of later batches, which are not sent.
        `idempotent` (default: no POST among the requests) lets the pipeline resend a batch whose answer
        was lost; a batch answered 429 is resent in any case.
        """
        requests = list(requests)
        if atomic and len(requests) > MAX_BATCH_REQUESTS:
            raise ValueError(f"an atomic batch holds at most {MAX_BATCH_REQUESTS} requests")
        results: list[BatchResult] = []
        for start in range(0, len(requests), MAX_BATCH_REQUESTS):
            chunk = requests[start : start + MAX_BATCH_REQUESTS]
            chunk_results = self._send_batch(chunk, continue_on_error, atomic, idempotent)
            results.extend(chunk_results)
            if not continue_on_error and not all(r.ok for r in chunk_results):
                results.extend(BatchResult(request=r, status=None) for r in requests[len(results) :])
                break
        return results

    def _send_batch(
        self, chunk: list[BatchRequest], continue_on_error: bool, atomic: bool, idempotent: bool | None
    ) -> list[BatchResult]:
        content_type, body = build_batch(chunk, api_url=self.api_url, atomic=atomic)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        if idempotent is None:
            idempotent = all(r.method.upper() != "POST" for r in chunk)
        # Without continue-on-error the first failing part's status becomes the batch's status, but the
        # body is still the multipart answer; a whole-batch failure (429, 401, bad batch) is JSON.
        response = self.pipeline.request(
            "POST",
            "$batch",
            headers=headers,
            data=body,
            idempotent=idempotent,
            accept=lambda r: boundary_of(r.headers.get("Content-Type")) is not None,
        )
        response_type = response.headers.get("Content-Type") or ""
        if boundary_of(response_type) is None:
            raise ServiceError(
                f"POST $batch: answer is {response_type or 'untyped'}, not multipart/mixed",
                status=response.status_code,
                service=SERVICE,
                body=response.text,
            )
        return parse_batch_response(response_type, response.content, chunk, atomic=atomic)
