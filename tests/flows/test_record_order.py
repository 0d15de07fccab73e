"""Where a delivered change stands among the ones applied: by version, else by modifiedon, else unknown
(the webhook reads the row). Pure rules, no stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.flows.ingress import Outcome
from shared.flows.ingress.order import already_applied, ordered
from shared.mapping.engine import SourceRow
from shared.store import LedgerRecord

T = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
APPLIED = LedgerRecord("contacts", "c1", source_version=100, source_modified_on=T, operation_id="op-1")
APPLIED_WITHOUT_VERSION = APPLIED.evolve(source_version=None)


def row(version: int | None = None, modified_on: datetime | None = None) -> SourceRow:
    return SourceRow(id="c1", version=version, values={}, modified_on=modified_on)


@pytest.mark.parametrize(
    ("entry", "change", "operation", "verdict"),
    [
        (None, row(1), "op-9", None),
        (APPLIED, row(101), "op-1", Outcome.DUPLICATE),
        (APPLIED, row(99, T + timedelta(hours=1)), "op-2", Outcome.STALE),  # the version decides
        (APPLIED, row(101), "op-2", None),
        (APPLIED, row(100), "op-2", None),  # same version: the content hash decides
        (APPLIED_WITHOUT_VERSION, row(None, T - timedelta(seconds=1)), "op-2", Outcome.STALE),
        (APPLIED_WITHOUT_VERSION, row(None, T + timedelta(seconds=1)), "op-2", None),
    ],
)
def test_a_change_is_judged_by_operation_then_version_then_modifiedon(entry, change, operation, verdict):
    assert already_applied(entry, change, operation) == verdict


def test_changes_without_versions_in_the_same_second_cannot_be_ordered_without_reading_the_row():
    assert not ordered(APPLIED, row(None, T))
    assert not ordered(APPLIED, row(None, None))
    assert ordered(APPLIED, row(None, T + timedelta(seconds=1)))
    assert ordered(APPLIED, row(101, None))
    assert ordered(None, row(None, None))
