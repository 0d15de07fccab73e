"""The names the integration shows in Azure Monitor: metric names, their dimensions, and the log fields
that arrive as `customDimensions`. The workbook and the alert rules in `infra/modules/monitoring.bicep`
query these names; `tests/infra/test_kql_names.py` fails when a query uses a name that is not here, so
renaming one here (or in code that emits it) without the queries breaks the build, not the alerts.

Metrics are OpenTelemetry instruments (`shared.telemetry.metrics`); in Application Insights they are rows
of `customMetrics` (`AppMetrics` in the workspace) whose `name` is the metric name and whose
`customDimensions` carry the dimensions below.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter / histogram
    unit: str
    description: str
    dimensions: tuple[str, ...]


# Dimension names (also log fields).
FLOW = "flow"  # contacts_sync, events_push, optout_sync, verify_sync, webhook_d365
MAPPING = "mapping"  # the sync config's mapping name (contacts, …); "" for flows without one
OUTCOME = "outcome"
SERVICE = "service"  # campaign, dataverse, ims, journal
STATUS = "status"  # HTTP status code as text, or "error" when no answer came
KIND = "kind"

RECORDS = MetricSpec(
    "acsd365.records",
    "counter",
    "{record}",
    "Records handled, by outcome: inserted, updated, deleted, unchanged, excluded, failed, dead_lettered.",
    (FLOW, MAPPING, OUTCOME),
)
API_CALLS = MetricSpec(
    "acsd365.api.calls",
    "counter",
    "{call}",
    "HTTP calls to Campaign, Dataverse, IMS and the I/O Events journal, by answer status (429 = throttled).",
    (SERVICE, STATUS),
)
WEBHOOK_ANSWERS = MetricSpec(
    "acsd365.webhook.answers",
    "counter",
    "{answer}",
    "Answers of the Dataverse webhook, by HTTP status.",
    (STATUS,),
)
RUNS = MetricSpec(
    "acsd365.runs",
    "counter",
    "{run}",
    "Timer runs, by outcome: succeeded, partial, stopped_for_time, failed.",
    (FLOW, OUTCOME),
)
LAG = MetricSpec(
    "acsd365.lag",
    "histogram",
    "s",
    "Age of the oldest change not yet applied, per mapping; for events_push, the journal lag.",
    (FLOW, MAPPING),
)
DRIFT = MetricSpec(
    "acsd365.drift",
    "counter",
    "{record}",
    "Records on which Campaign disagreed with Dynamics in a verify run, by kind: missing, extra, different, "
    "duplicate.",
    (FLOW, MAPPING, KIND),
)
# The `kind` values of DRIFT and the verify figures (`shared.flows.verify`) they count.
DRIFT_KINDS = {"missing": "missing", "extra": "extra", "different": "mismatched", "duplicate": "duplicates"}
DEAD_LETTERS = MetricSpec(
    "acsd365.dead_letters",
    "counter",
    "{record}",
    "Records put in the dead-letter store.",
    (FLOW, MAPPING),
)

METRICS: tuple[MetricSpec, ...] = (RECORDS, API_CALLS, WEBHOOK_ANSWERS, RUNS, LAG, DRIFT, DEAD_LETTERS)

# Log fields every structured line may carry as customDimensions (besides the event's own fields, which
# the KQL test reads from the `log_event` calls in the code).
LOG_FIELDS = ("event", "correlation_id", FLOW, MAPPING, OUTCOME)
