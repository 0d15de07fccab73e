"""Where a delivered change stands among the ones applied to a record: by `versionnumber`, else by
`modifiedon`, else unknown (the webhook then reads the row, which carries its version)."""

from __future__ import annotations

from shared.flows.ingress.common import Outcome
from shared.mapping.engine import SourceRow
from shared.store import LedgerRecord


def already_applied(entry: LedgerRecord | None, row: SourceRow, operation_id: str | None) -> Outcome | None:
    """`DUPLICATE` for a redelivered operation, `STALE` for a change older than the one recorded."""
    if entry is None:
        return None
    if operation_id and entry.operation_id == operation_id:
        return Outcome.DUPLICATE
    if row.version is not None and entry.source_version is not None:
        return Outcome.STALE if row.version < entry.source_version else None
    if row.modified_on is not None and entry.source_modified_on is not None:
        return Outcome.STALE if row.modified_on < entry.source_modified_on else None
    return None


def ordered(entry: LedgerRecord | None, row: SourceRow) -> bool:
    """Can `row` be placed before or after what the ledger records without reading Dynamics? Not when
    neither carries a version and their `modifiedon` are equal or missing (same-second changes)."""
    if entry is None or (row.version is not None and entry.source_version is not None):
        return True
    if row.version is not None and entry.source_version is None and entry.source_modified_on is None:
        return True
    return (
        row.modified_on is not None
        and entry.source_modified_on is not None
        and row.modified_on != entry.source_modified_on
    )
