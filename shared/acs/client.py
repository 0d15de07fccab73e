"""Adobe Campaign Standard REST client (profiles, custom resources, filters) on `shared.http.ApiPipeline`.

Resources are paths under the base URL (`https://mc.adobe.io/<tenant>/campaign`), e.g.
`profileAndServicesExt/profile`, `profileAndServicesExt/cusVehicle`, `customResources/cusFoo`.
Records are addressed by Campaign's opaque `PKey`, which is never a cross-system identifier: find records
by a business key through a filter (`find_one_by_key`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import requests

from shared.acs.errors import DUPLICATE_KEY_MESSAGE, AmbiguousKeyError, parse_campaign_error
from shared.errors import ConflictError, RequestRejectedError, ServiceError
from shared.http import ApiPipeline, RetryPolicy, TokenProvider, new_session
from shared.ratelimit import RateLimiter, SharedRate

log = logging.getLogger(__name__)


def format_campaign_datetime(value: datetime) -> str:
    """Campaign's own timestamp format, as in `lastModified`: `2019-09-25 23:20:35.000Z` (UTC)."""
    if value.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required (Campaign compares UTC timestamps)")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def single_record(body: Any) -> dict[str, Any]:
    """One record from an answer Adobe documents both bare (`{"PKey", ...}`, "GET / POST / PATCH / DELETE
    verbs") and wrapped (`{"content": [{"PKey", ...}]}`, "Updating profiles")."""
    if isinstance(body, dict) and "PKey" not in body and isinstance(body.get("content"), list):
        if len(body["content"]) != 1:
            raise ServiceError(
                f"a single-record answer held {len(body['content'])} records", service="campaign"
            )
        return body["content"][0]
    return body


def filter_path_name(filter_name: str) -> str:
    """The filter as called: `ExternalId` and `externalId` become `byExternalId` (Campaign Standard's
    custom filter prefix); a name with the prefix is used as is."""
    if filter_name.startswith("by"):
        return filter_name
    return "by" + filter_name[:1].upper() + filter_name[1:]


def _with_query(path: str, query: Mapping[str, Any]) -> str:
    # %20 rather than '+' for spaces: Campaign documents `_order=lastModified%20desc`.
    return f"{path}?{urlencode(query, quote_via=quote)}"


class CampaignClient:
    """Calls one Campaign Standard instance with Adobe's required headers, a client-side rate limit, and
    retries that never resend a create the server may have applied.

    :param base_url: `https://mc.adobe.io/<tenant>/campaign` (`<tenant>-mkt-stage` for stage).
    :param client_id: the credential's client id, sent as `X-Api-Key`.
    :param token_provider: usually `shared.acs.ims.ImsTokenProvider`.
    :param requests_per_second: client-side cap; Adobe publishes no number, it depends on the licence.
    :param max_concurrency: requests in flight at once, across threads.
    :param shared_rate: this process's share of a budget across instances; replaces `requests_per_second`.
    """

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        token_provider: TokenProvider,
        timeout: tuple[float, float] = (5, 60),
        requests_per_second: float | None = None,
        shared_rate: SharedRate | None = None,
        max_concurrency: int = 4,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        verify: str | bool | None = None,
    ) -> None:
        self.pipeline = ApiPipeline(
            service="campaign",
            base_url=base_url,
            token_provider=token_provider,
            default_headers={
                "X-Api-Key": client_id,
                "Content-Type": "application/json",
                "Cache-Control": "no-cache",
                "Accept": "application/json",
            },
            timeout=timeout,
            retry=retry or RetryPolicy(),
            limiter=RateLimiter(
                requests_per_second=requests_per_second, max_concurrency=max_concurrency, shared=shared_rate
            ),
            error_parser=parse_campaign_error,
            session=session or new_session(),
            verify=verify,
        )

    @property
    def stats(self) -> dict[str, int]:
        """Requests sent, retries and 429s seen so far (from the pipeline)."""
        return self.pipeline.stats

    # -- reading ---------------------------------------------------------------------------------

    def iter_pages(
        self,
        resource: str,
        *,
        line_count: int = 1000,
        order: str | None = None,
        force_pagination: bool = False,
        params: Mapping[str, Any] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the records of `resource` page by page, following `next.href` exactly until it is absent.

        :param order: `_order` value, e.g. `lastModified` or `lastModified desc`.
        :param force_pagination: `_forcePagination=true`, needed for tables over 100,000 rows.
        :param params: extra query parameters (filter parameters) for the first page only; the
            server carries them into `next.href`.
        """
        query: dict[str, Any] = {"_lineCount": line_count}
        if order:
            query["_order"] = order
        if force_pagination:
            query["_forcePagination"] = "true"
        query.update(params or {})
        url: str | None = _with_query(resource, query)
        while url:
            body = self.pipeline.request("GET", url).json()
            content = body.get("content") or []
            if content:
                yield content
            url = (body.get("next") or {}).get("href")
            if url is None and len(content) >= line_count and not force_pagination:
                # Campaign drops `next` on tables over 100,000 rows unless pagination is forced.
                log.warning(
                    "Campaign %s: a full page came without a next link; the listing may be truncated "
                    "(use force_pagination=True on large tables)",
                    resource,
                )

    def find_by(
        self,
        resource: str,
        filter_name: str,
        params: Mapping[str, Any],
        *,
        custom: bool = True,
        line_count: int = 1000,
    ) -> list[dict[str, Any]]:
        """Records matched by a filter resource: `GET <resource>/<filter>?<param>=<value>`.

        :param filter_name: e.g. `byExternalId` (the `by` prefix is added when missing).
        :param params: filter parameters by name, e.g. `{"externalId": "abc"}`.
        :param custom: a filter defined in the instance (its parameters are sent as
            `<name>_parameter`); False for built-ins such as `byEmail?email=` and `byText?text=`.
        """
        filter_name = filter_path_name(filter_name)
        query = {(f"{name}_parameter" if custom else name): value for name, value in params.items()}
        return [
            record
            for page in self.iter_pages(f"{resource}/{filter_name}", line_count=line_count, params=query)
            for record in page
        ]

    def find_one_by_key(
        self, resource: str, filter_name: str, key_param: str, value: Any, *, custom: bool = True
    ) -> dict[str, Any] | None:
        """The one record whose business key equals `value`, or None.

        :raises AmbiguousKeyError: several records share the key (a data problem; not retriable).
        """
        matches = self.find_by(resource, filter_name, {key_param: value}, custom=custom)
        if len(matches) > 1:
            pkeys = [str(m.get("PKey")) for m in matches]
            raise AmbiguousKeyError(
                f"{len(matches)} {resource} records match {filter_name} {key_param}={value!r}: {pkeys}",
                pkeys=pkeys,
                service="campaign",
            )
        return matches[0] if matches else None

    def get(self, resource: str, pkey: str) -> dict[str, Any] | None:
        """The record with this PKey (answered bare or as `{"content": [record]}`), or None on a 404."""
        response = self.pipeline.request("GET", self._record_path(resource, pkey), ok_statuses=(404,))
        return None if response.status_code == 404 else single_record(response.json())

    def iter_changed_since(
        self,
        resource: str,
        since: datetime | None,
        *,
        filter_name: str = "byLastModifiedSince",
        param: str = "since",
        line_count: int = 1000,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of records modified at or after `since` (all records when None), oldest change first.

        Campaign has no built-in "modified since" filter: the instance needs a custom filter on
        `lastModified` (name and parameter configurable). Ordering by `lastModified` ascending lets the
        caller checkpoint the last timestamp it processed; records at exactly that timestamp may come
        again on the next run, so processing must be idempotent.
        """
        if since is None:
            yield from self.iter_pages(resource, line_count=line_count, order="lastModified")
            return
        yield from self.iter_pages(
            f"{resource}/{filter_name}",
            line_count=line_count,
            order="lastModified",
            params={f"{param}_parameter": format_campaign_datetime(since)},
        )

    # -- writing ---------------------------------------------------------------------------------

    def create(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a new record; answers the created record (with its `PKey`).

        A create is resent only when the server certainly did not apply it (429/503, connection refused).
        On an ambiguous failure (`ConnectionFailedError` with `may_have_applied`, or a `TransientError`
        from a 5xx) the record may exist: look it up by its business key (`find_one_by_key`) before
        trying again, or it may be created twice.

        :raises ConflictError: a record with the same identification key exists (Campaign answers its
            database's unique-key violation, `PGS-220000 ... duplicate key value`): another writer won.
        """
        try:
            return single_record(self.pipeline.request("POST", resource, json=dict(body)).json())
        except RequestRejectedError as exc:
            if DUPLICATE_KEY_MESSAGE not in (exc.message or ""):
                raise
            raise ConflictError(
                exc.message, status=exc.status, code=exc.code, service="campaign", body=exc.body
            ) from exc

    def patch(self, resource: str, pkey: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Update fields of a record; answers `{"PKey", "href"}`.

        :raises NotFoundError: no record has this PKey.
        """
        # Setting fields to given values is idempotent, so a lost answer may be resent safely.
        return self.pipeline.request(
            "PATCH", self._record_path(resource, pkey), json=dict(body), idempotent=True
        ).json()

    def delete(self, resource: str, pkey: str, *, missing_ok: bool = True) -> None:
        """Delete a record. An unknown PKey is fine when `missing_ok` (a resent delete finds nothing)."""
        self.pipeline.request(
            "DELETE", self._record_path(resource, pkey), ok_statuses=(404,) if missing_ok else ()
        )

    @staticmethod
    def _record_path(resource: str, pkey: str) -> str:
        if not pkey:
            raise ValueError("an empty PKey would address the whole collection")
        return f"{resource.rstrip('/')}/{quote(pkey, safe='@')}"
