"""How a timer goes through the table mappings: one place for what an error means to the run."""

from __future__ import annotations

from collections.abc import Callable

from shared.errors import AuthenticationError, ServiceError
from shared.mapping.model import TableMapping
from shared.store import RunReport


def each_mapping(
    tables: list[TableMapping], report: RunReport, work: Callable[[TableMapping], str | None]
) -> str:
    """Run `work` for every enabled mapping and answer the run's outcome. Rejected credentials stop the
    run (`failed`: no other mapping would do better); another service error is reported and the next
    mapping goes on (`partial`). `work` answers None to go on, or an outcome: `stopped_for_time` stops
    the run, any other (e.g. `partial`) is kept unless a worse one comes."""
    outcome = "succeeded"
    for mapping in tables:
        if not mapping.enabled:
            continue
        try:
            verdict = work(mapping)
        except AuthenticationError as exc:
            report.error(mapping=mapping.name, error=str(exc))
            return "failed"
        except ServiceError as exc:
            report.error(mapping=mapping.name, error=str(exc))
            outcome = "partial"
            continue
        if verdict == "stopped_for_time":
            return verdict
        if verdict is not None and outcome == "succeeded":
            outcome = verdict
    return outcome
