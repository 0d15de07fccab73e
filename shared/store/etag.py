"""The one optimistic-concurrency save every Table-backed store uses: create when the caller saw no row
(no ETag), replace only if the row still has the ETag the caller read; anything else is a concurrent
change, reported as the caller's own `ConcurrentChange` subclass so it can decide again on fresh state."""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode


class ConcurrentChange(RuntimeError):
    """Another writer changed (or created, or removed) the row since it was read."""


def save_entity(
    table: TableClient,
    entity: dict[str, Any],
    *,
    etag: str | None,
    conflict: type[ConcurrentChange],
    message: str,
) -> dict[str, Any]:
    """Write `entity`; answers the service's metadata (`etag`, `date`: the server's time of the write).

    :raises conflict: the row exists although `etag` is None, or no longer has `etag`.
    """
    try:
        if etag is None:
            return table.create_entity(entity)
        return table.update_entity(
            entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
        )
    except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
        raise conflict(message) from exc
