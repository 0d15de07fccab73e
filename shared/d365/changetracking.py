"""Read a Dataverse table through change tracking (`Prefer: odata.track-changes`), one page at a time.

Start with no link for a full load; persist each page's `checkpoint` after processing the page; resume
from it later. A checkpoint is a nextLink (mid-load) or the deltaLink from the last page (next delta).
When the service says the delta token has expired, discard it and start a full load again.

Dataverse answers a delta link with nothing new in several documented shapes: an empty page with a new
deltaLink, an empty page without one, or an empty JSON object ("An empty JSON response is returned if no
table changes have occurred"). A last page without a deltaLink keeps the link it was read from as the
checkpoint: the previous token stays, and a checkpoint never falls back to a full load by accident.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.d365.client import DELTA_TOKEN_EXPIRED_CODE, DataverseClient
from shared.d365.odata import TRACK_CHANGES, max_page_size, query_string
from shared.errors import RequestRejectedError, ServiceError


class DeltaTokenExpired(RequestRejectedError):
    """The saved delta token is older than the organisation keeps changes (`0x80044352`): full resync."""


@dataclass(frozen=True)
class ChangePage:
    upserts: list[dict[str, Any]]
    deletes: list[str]
    next_link: str | None
    delta_link: str | None
    is_initial: bool

    @property
    def checkpoint(self) -> str | None:
        """The link to persist once this page is processed."""
        return self.next_link or self.delta_link


def is_deleted_entry(row: dict[str, Any]) -> bool:
    return str(row.get("@odata.context", "")).endswith("/$deletedEntity") or row.get("reason") == "deleted"


def _is_delta_link(link: str) -> bool:
    lowered = link.lower()
    return "$deltatoken=" in lowered or "%24deltatoken=" in lowered


class ChangeTrackingReader:
    """Yields `ChangePage`s for `entity_set` (whose table has change tracking enabled)."""

    def __init__(
        self,
        client: DataverseClient,
        entity_set: str,
        *,
        select: str | Iterable[str] | None = None,
        page_size: int = 5000,
    ) -> None:
        self.client = client
        self.entity_set = entity_set
        self.select = select
        self._prefer = [TRACK_CHANGES, max_page_size(page_size)]

    def iter_pages(self, start_link: str | None = None) -> Iterator[ChangePage]:
        """`start_link`: None for a full load, else a saved checkpoint (nextLink or deltaLink)."""
        link: str | None = start_link or self.entity_set + query_string(select=self.select)
        is_initial = start_link is None or not _is_delta_link(start_link)
        while link:
            try:
                page = self.client.read_page(link, prefer=self._prefer)
            except ServiceError as exc:
                if (exc.code or "").lower() == DELTA_TOKEN_EXPIRED_CODE:
                    raise DeltaTokenExpired(
                        exc.message, status=exc.status, code=exc.code, service=exc.service, body=exc.body
                    ) from exc
                raise
            upserts, deletes = [], []
            for row in page.rows:
                if is_deleted_entry(row):
                    deletes.append(row["id"])
                else:
                    upserts.append(row)
            delta_link = None if page.next_link else page.delta_link
            if not page.next_link and not delta_link:
                delta_link = link if _is_delta_link(link) else None
                if delta_link is None:
                    raise ServiceError(
                        f"Dataverse ended the change-tracking read of {self.entity_set} without a deltaLink",
                        service="dataverse",
                    )
            yield ChangePage(
                upserts=upserts,
                deletes=deletes,
                next_link=page.next_link,
                delta_link=delta_link,
                is_initial=is_initial,
            )
            link = page.next_link
