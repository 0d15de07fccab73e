"""The catalogue's metrics as OpenTelemetry instruments, and the one call each mechanism makes to emit one.

Instruments come from the global meter provider: until `configure_telemetry` has installed the Azure
Monitor one they are the API's no-op proxies (cheap), and once it has, the same instruments forward to
it. A call names its dimensions as keywords; a dimension the catalogue does not list for the metric, or
one it lists but the call leaves out, raises at once, so the workbook's queries and the code cannot
drift apart silently.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from typing import Any, TypeVar

from opentelemetry import metrics

from shared.telemetry.catalog import METRICS, RECORDS, MetricSpec

METER_NAME = "acsd365"
T = TypeVar("T", bound=str)


class DimensionError(ValueError):
    """A metric was emitted with dimensions other than the catalogue's."""


@functools.cache
def _instrument(spec: MetricSpec) -> Any:
    meter = metrics.get_meter(METER_NAME)
    if spec.kind == "counter":
        return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
    if spec.kind == "histogram":
        return meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)
    raise ValueError(f"{spec.name}: unknown metric kind {spec.kind!r}")


def _attributes(spec: MetricSpec, dimensions: dict[str, Any]) -> dict[str, str]:
    if spec not in METRICS:
        raise DimensionError(f"{spec.name} is not in the telemetry catalogue")
    if set(dimensions) != set(spec.dimensions):
        raise DimensionError(
            f"{spec.name} takes dimensions {sorted(spec.dimensions)}, got {sorted(dimensions)}"
        )
    return {key: "" if value is None else str(value) for key, value in dimensions.items()}


def count(spec: MetricSpec, n: int = 1, **dimensions: Any) -> None:
    """Add `n` to a counter of the catalogue."""
    attributes = _attributes(spec, dimensions)
    if n:
        _instrument(spec).add(n, attributes)


def record(spec: MetricSpec, value: float, **dimensions: Any) -> None:
    """Record one value of a histogram of the catalogue (e.g. a lag in seconds)."""
    _instrument(spec).record(value, _attributes(spec, dimensions))


def count_records(flow: str, mapping: str, outcomes: Iterable[T]) -> Counter[T]:
    """Records handled, by outcome: what each flow calls once it knows the outcomes of a batch. Answers
    the outcomes counted, for the run report."""
    counted = Counter(outcomes)
    for outcome, n in counted.items():
        count(RECORDS, n, flow=flow, mapping=mapping, outcome=outcome)
    return counted
