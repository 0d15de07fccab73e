"""Adobe I/O Events journal reader: pulls Campaign's email events batch by batch.

`GET <journal>?limit=N&since=<position>` answers `{"events": [{"position", "event"}], "_page": {"last"}}`
and a `Link: <...>; rel="next"` header; at the end of the journal it answers 204 with `retry-after`.
A position older than the 7-day retention answers 410 Gone ("Events at position ... have expired").
Delivery is at least once and unordered: consumers deduplicate by event id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

from shared.acs.errors import JournalPositionExpired, parse_gateway_error
from shared.acs.events import CampaignEmailEvent, EventParser
from shared.errors import NotFoundError, RequestRejectedError
from shared.http import ApiPipeline, RetryPolicy, TokenProvider, new_session, parse_retry_after
from shared.ratelimit import RateLimiter

# Besides the documented 410, accept a 400/404 whose message says the position is stale or unknown.
_EXPIRED_MESSAGE = re.compile(r"expired|invalid position|position .*(not (valid|found)|unknown)", re.I)


@dataclass(frozen=True)
class JournalBatch:
    """One page of the journal. Checkpoint `position` only after the events are durably processed."""

    events: list[CampaignEmailEvent]
    raw_count: int
    position: str | None


class JournalReader:
    """Reads one event registration's journal.

    :param journal_url: the registration's journaling endpoint (Developer Console).
    :param client_id: sent as `x-api-key`.
    :param org_id: `<id>@AdobeOrg`, sent as `x-ims-org-id`.
    :param limit: upper bound on events per batch (the service may return fewer).
    :param parser: how event bodies are read (field paths, type map); defaults to `EventParser()`.

    After `iter_batches` is exhausted, `retry_after` holds the seconds the journal asked us to wait
    (from its 204) and `end_position` the position at the end of the journal, which is the one to
    checkpoint when no batch came at all (e.g. the first read with `latest=True`).
    """

    def __init__(
        self,
        *,
        journal_url: str,
        client_id: str,
        org_id: str,
        token_provider: TokenProvider,
        limit: int = 100,
        timeout: tuple[float, float] = (5, 60),
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        parser: EventParser | None = None,
        verify: str | bool | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be a positive integer")
        self.journal_url = journal_url
        self.limit = limit
        self.parser = parser or EventParser()
        self.pipeline = ApiPipeline(
            service="io-events",
            base_url=journal_url,
            token_provider=token_provider,
            default_headers={"x-api-key": client_id, "x-ims-org-id": org_id, "Accept": "application/json"},
            timeout=timeout,
            retry=retry or RetryPolicy(),
            # One reader walks one journal sequentially.
            limiter=RateLimiter(max_concurrency=1),
            error_parser=parse_gateway_error,
            session=session or new_session(),
            verify=verify,
        )
        self.retry_after: float | None = None
        self.end_position: str | None = None

    def iter_batches(self, since: str | None = None, *, latest: bool = False) -> Iterator[JournalBatch]:
        """Yield batches from `since` (exclusive) until the journal answers 204.

        :param since: a position saved from `JournalBatch.position`; None starts at the oldest retained
            event (or at the end with `latest=True`).
        :raises JournalPositionExpired: `since` fell out of retention; restart with `since=None`.
        """
        self.retry_after = None
        self.end_position = since
        query: dict[str, Any] = {"limit": self.limit}
        if since:
            query["since"] = since
        elif latest:
            query["latest"] = "true"
        url: str | None = self._url(query)
        while url:
            response = self._get(url)
            next_url = self._next_link(response)
            if response.status_code == 204:
                self.retry_after = parse_retry_after(response.headers.get("retry-after"))
                self.end_position = _since_of(next_url) or self.end_position
                return
            body = response.json()
            entries = body.get("events") or []
            position = (body.get("_page") or {}).get("last") or (
                entries[-1].get("position") if entries else None
            )
            events = [
                self.parser.parse(entry.get("event"), position=entry.get("position"))
                for entry in entries
                if isinstance(entry, dict)
            ]
            if position:
                self.end_position = position
            yield JournalBatch(events=events, raw_count=len(entries), position=position)
            if next_url is None and position:
                next_url = self._url({"limit": self.limit, "since": position})
            url = next_url

    def peek(
        self, since: str | None, *, timeout: tuple[float, float] | None = None
    ) -> CampaignEmailEvent | None:
        """The first event after `since` (None: the oldest retained one), or None at the end of the
        journal. Reads one event and moves nothing: how far behind a reader at `since` is.

        :raises JournalPositionExpired: `since` fell out of retention.
        """
        query: dict[str, Any] = {"limit": 1}
        if since:
            query["since"] = since
        response = self._get(self._url(query), timeout=timeout)
        if response.status_code == 204:
            return None
        entries = [entry for entry in response.json().get("events") or [] if isinstance(entry, dict)]
        if not entries:
            return None
        return self.parser.parse(entries[0].get("event"), position=entries[0].get("position"))

    def _url(self, query: dict[str, Any]) -> str:
        separator = "&" if "?" in self.journal_url else "?"
        return f"{self.journal_url}{separator}{urlencode(query)}"

    def _get(self, url: str, *, timeout: tuple[float, float] | None = None) -> requests.Response:
        since = _since_of(url)
        try:
            return self.pipeline.request("GET", url, timeout=timeout)
        except (RequestRejectedError, NotFoundError) as exc:
            # 410 Gone is documented; some gateways word a stale position as a 400/404 instead.
            if since and (exc.status == 410 or _EXPIRED_MESSAGE.search(exc.body or exc.message or "")):
                raise JournalPositionExpired(
                    f"journal position {since} has expired or is no longer valid ({exc.status}); events "
                    "between it and the oldest retained event are lost",
                    position=since,
                    status=exc.status,
                    code=exc.code,
                    service="io-events",
                    body=exc.body,
                ) from exc
            raise

    @staticmethod
    def _next_link(response: requests.Response) -> str | None:
        href = response.links.get("next", {}).get("url")
        # The journal sends links relative to its host.
        return urljoin(response.url, href) if href else None


def _since_of(url: str | None) -> str | None:
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("since")
    return values[0] if values else None
