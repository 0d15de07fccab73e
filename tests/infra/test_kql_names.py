"""The alert rules, the workbook and the runbook's queries against the names the code emits.

A query that names a metric, an event or a dimension nothing emits is not an error in Azure Monitor: it
returns no rows, so an alert never fires and a chart stays empty. This check makes such a rename break
the build instead: every name the queries use must be in the telemetry catalogue or in a `log_event` call
of shared/ (tests/infra/kql.py says how each is read).
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from shared.telemetry.catalog import METRICS, WEBHOOK_ANSWERS
from tests.infra.kql import (
    MONITORING_DOC,
    QUERY_DIR,
    ROOT,
    WORKBOOK,
    EmittedNamesError,
    UsedNames,
    alert_queries,
    all_queries,
    emitted_names,
    logged_events,
    name_problems,
    names_used,
    shared_sources,
)

ALERTS_BICEP = ROOT / "infra" / "modules" / "alerts.bicep"
EMITTED = emitted_names()


# -- the queries as they are -------------------------------------------------------------------------------


def test_every_name_the_alerts_the_workbook_and_the_runbook_query_is_one_the_code_emits():
    assert name_problems(all_queries(), EMITTED) == []


def test_each_alert_reads_names_the_code_emits():
    # Not vacuous: every alert query names a metric or an event, and reads at least one dimension.
    for name, query in alert_queries().items():
        used = names_used(query)
        assert used.metrics or used.events, name
        assert used.dimensions, name


def test_every_query_file_is_an_alert_rule_of_the_bicep_and_is_shown_in_the_runbook():
    loaded = set(re.findall(r"loadTextContent\('\.\./queries/([^']+)'\)", ALERTS_BICEP.read_text()))
    files = {path.name for path in QUERY_DIR.glob("*.kql")}
    assert loaded == files
    runbook = MONITORING_DOC.read_text()
    for path in sorted(QUERY_DIR.glob("*.kql")):
        assert path.read_text().strip() in runbook, f"{path.name} is not in docs/monitoring.md as it is"


def test_the_workbook_is_a_workbook_whose_queries_run_on_the_application_insights_component():
    workbook = json.loads(WORKBOOK.read_text())
    assert workbook["version"] == "Notebook/1.0"
    query_items = [item for item in workbook["items"] if item["type"] == 3]
    assert len(query_items) >= 10
    for item in query_items:
        assert item["content"]["resourceType"] == "microsoft.insights/components", item["name"]
        assert item["content"]["timeContextFromParameter"] == "TimeRange", item["name"]
    parameters = {p["name"] for i in workbook["items"] if i["type"] == 9 for p in i["content"]["parameters"]}
    assert {"TimeRange", "Flow", "Mapping"} <= parameters


# -- the check fails when a name is renamed ----------------------------------------------------------------


def _alert_dimensions() -> list[tuple[str, str]]:
    return [
        (name, dimension)
        for name, query in alert_queries().items()
        for dimension in sorted(names_used(query).dimensions)
    ]


@pytest.mark.parametrize(("alert", "dimension"), _alert_dimensions())
def test_renaming_a_dimension_an_alert_uses_is_reported(alert, dimension):
    renamed = EMITTED.with_dimension_renamed(dimension, f"{dimension}_renamed")
    problems = name_problems(alert_queries(), renamed)
    assert any(p.startswith(f"{alert}: dimension {dimension!r}") for p in problems), problems


def test_a_dimension_renamed_in_the_catalogue_names_the_alert_and_the_dimension():
    renamed = dataclasses.replace(WEBHOOK_ANSWERS, dimensions=("status_code",))
    metrics = [renamed if spec is WEBHOOK_ANSWERS else spec for spec in METRICS]
    problems = name_problems(alert_queries(), emitted_names(metrics=metrics))
    assert problems == ["webhook-errors.kql: dimension 'status' is not emitted with acsd365.webhook.answers"]


def test_a_metric_renamed_in_the_catalogue_is_reported():
    renamed = dataclasses.replace(WEBHOOK_ANSWERS, name="acsd365.webhook.responses")
    metrics = [renamed if spec is WEBHOOK_ANSWERS else spec for spec in METRICS]
    problems = name_problems(alert_queries(), emitted_names(metrics=metrics))
    assert problems == [
        "webhook-errors.kql: metric 'acsd365.webhook.answers' is not in shared/telemetry/catalog.py"
    ]


def _sources_with(path: str, old: str, new: str) -> dict[str, str]:
    sources = shared_sources()
    assert sources[path].count(old) == 1, f"{old!r} is not once in {path}"
    sources[path] = sources[path].replace(old, new)
    return sources


def test_a_log_field_renamed_in_the_code_is_reported_for_the_alert_that_reads_it():
    # contacts_sync's run line calls its outcome `result`: the run alert could no longer see failures.
    flow = "shared/flows/ingress/flow.py"
    sources = _sources_with(flow, "outcome=report.outcome,", "result=report.outcome,")
    problems = name_problems(alert_queries(), emitted_names(sources=sources))
    assert problems == [
        "flow-not-succeeding.kql: dimension 'outcome' is not emitted with "
        "events.run, ingress.run, optout.run, verify.run"
    ]


def test_an_event_renamed_in_the_code_is_reported():
    sources = _sources_with("shared/flows/verify/verifier.py", '"verify.run"', '"verify.finished"')
    problems = name_problems(alert_queries(), emitted_names(sources=sources))
    assert problems == [
        "flow-not-succeeding.kql: event 'verify.run' is not logged by any log_event call in shared/"
    ]


def test_a_workspace_table_name_is_reported():
    problems = name_problems({"q.kql": 'AppTraces\n| where Properties.event == "ingress.run"'}, EMITTED)
    assert problems == [
        "q.kql: AppTraces is a workspace name; the queries use the Application Insights tables "
        "(traces, customMetrics, customDimensions)"
    ]


# -- the readers -------------------------------------------------------------------------------------------


def test_the_query_reader_finds_metrics_events_and_dimensions_in_every_syntax():
    query = """
customMetrics
| where name in ("acsd365.records", 'acsd365.lag') and tostring(customDimensions.flow) != ""
| extend kind = tostring(customDimensions["kind"]), m = customDimensions['mapping']
| union (traces | where tostring(customDimensions.event) == "ingress.run" or event in~ ("a.b", 'c.d'))
| where message has "not.an_event"
"""
    assert names_used(query) == UsedNames(
        metrics=frozenset({"acsd365.records", "acsd365.lag"}),
        events=frozenset({"ingress.run", "a.b", "c.d"}),
        dimensions=frozenset({"flow", "kind", "mapping", "event"}),
    )


def test_the_code_reader_takes_every_log_event_call_and_its_keywords():
    source = """
log_event(log, logging.INFO, "a.run", outcome=x, **counts)
logs.log_event(log, logging.DEBUG, "a.run", run_id=y)
log.info("not.an_event")
"""
    assert logged_events({"m.py": source}) == {"a.run": frozenset({"outcome", "run_id"})}


def test_the_code_reader_refuses_an_event_name_it_cannot_read():
    with pytest.raises(EmittedNamesError, match=r"m\.py:1"):
        logged_events({"m.py": "log_event(log, logging.INFO, name, outcome=x)"})


def test_a_line_carries_its_fields_the_event_and_the_correlation_id_as_dimensions():
    assert EMITTED.events["webhook.answer"] >= {"event", "correlation_id", "status", "outcome", "reason"}
