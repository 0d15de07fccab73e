"""The names the monitoring queries use, and the names the code emits, for tests/infra/test_kql_names.py.

Queries: every `infra/queries/*.kql` (the alert rules load them), every `query` of the workbook and every
```kusto block of docs/monitoring.md. What a query uses:
- metric names: string literals `"acsd365...."`, wherever they are;
- event names: string literals compared with the `event` dimension (`event == "x"`, `event in ("x", "y")`,
  also through `customDimensions.event`);
- dimensions: `customDimensions.x`, `customDimensions["x"]`, `customDimensions['x']`.

What the code emits: the catalogue's metrics with their dimensions (`shared.telemetry.catalog`), and each
event of a `log_event(logger, level, "<event>", field=...)` call in shared/ (read with `ast`) with the
dimensions its lines carry: the keyword names as `shared.logs.log_event` turns them into record attributes
(found by calling it), plus what it adds to every line (`event`, `correlation_id`). Fields passed as
`**mapping` are not known before run time; queries must not depend on them.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.logs import correlation, log_event
from shared.telemetry.catalog import METRICS, MetricSpec

ROOT = Path(__file__).resolve().parents[2]
QUERY_DIR = ROOT / "infra" / "queries"
WORKBOOK = ROOT / "infra" / "workbook" / "integration.workbook.json"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
SHARED = ROOT / "shared"

_STRING = r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\''
_METRIC = re.compile(r"""["'](acsd365(?:\.[A-Za-z0-9_]+)+)["']""")
_DIMENSION = re.compile(r"""customDimensions\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*["']([^"']+)["']\s*\])""")
_EVENT_COMPARISON = re.compile(
    r"""(?:customDimensions\s*(?:\.\s*event|\[\s*["']event["']\s*\])|\bevent)\)?\s*"""
    rf"""(?:==|=~|!=|!~|!?in~?|!?has|!?startswith)\s*(\([^)]*\)|{_STRING})"""
)
# Workspace names: the rules and the workbook are scoped to the Application Insights component.
_WORKSPACE_NAMES = re.compile(
    r"\b(?:AppTraces|AppMetrics|AppRequests|AppDependencies|AppExceptions)\b|\bProperties\s*[.\[]"
)
_KUSTO_BLOCK = re.compile(r"^```kusto\n(.*?)^```", re.MULTILINE | re.DOTALL)


class EmittedNamesError(ValueError):
    """The code logs something the check cannot name (an event that is not a string literal)."""


@dataclass(frozen=True)
class UsedNames:
    metrics: frozenset[str]
    events: frozenset[str]
    dimensions: frozenset[str]


@dataclass(frozen=True)
class EmittedNames:
    metrics: Mapping[str, frozenset[str]]  # metric name -> its dimensions
    events: Mapping[str, frozenset[str]]  # event -> the customDimensions of its lines

    def with_dimension_renamed(self, old: str, new: str) -> EmittedNames:
        """The same names with one dimension renamed wherever it is emitted (a rename in the code)."""

        def rename(names: frozenset[str]) -> frozenset[str]:
            return frozenset(new if name == old else name for name in names)

        return EmittedNames(
            {metric: rename(dims) for metric, dims in self.metrics.items()},
            {event: rename(dims) for event, dims in self.events.items()},
        )


# -- what the queries use --------------------------------------------------------------------------------


def _literals(text: str) -> list[str]:
    return [literal[1:-1] for literal in re.findall(_STRING, text)]


def names_used(query: str) -> UsedNames:
    return UsedNames(
        metrics=frozenset(_METRIC.findall(query)),
        events=frozenset(
            literal for compared in _EVENT_COMPARISON.findall(query) for literal in _literals(compared)
        ),
        dimensions=frozenset(dotted or indexed for dotted, indexed in _DIMENSION.findall(query)),
    )


def _workbook_queries(node: object, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        where = f"{WORKBOOK.name} {node['name']}" if isinstance(node.get("name"), str) else where
        for key, value in node.items():
            if key == "query" and isinstance(value, str):
                yield where, value
            else:
                yield from _workbook_queries(value, where)
    elif isinstance(node, list):
        for value in node:
            yield from _workbook_queries(value, where)


def alert_queries() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(QUERY_DIR.glob("*.kql"))}


def workbook_queries() -> dict[str, str]:
    return dict(_workbook_queries(json.loads(WORKBOOK.read_text()), WORKBOOK.name))


def doc_queries() -> dict[str, str]:
    blocks = _KUSTO_BLOCK.findall(MONITORING_DOC.read_text())
    return {f"{MONITORING_DOC.name} kusto block {i}": block for i, block in enumerate(blocks, 1)}


def all_queries() -> dict[str, str]:
    return {**alert_queries(), **workbook_queries(), **doc_queries()}


# -- what the code emits -----------------------------------------------------------------------------------


def logged_events(sources: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """{event: keyword names} of every `log_event(logger, level, "<event>", ...)` call in the sources
    ({path: text}); an event logged in several places gets the keywords of all of them."""
    events: dict[str, set[str]] = {}
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text, filename=path)):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
            if name != "log_event":
                continue
            if len(node.args) < 3 or not (
                isinstance(node.args[2], ast.Constant) and isinstance(node.args[2].value, str)
            ):
                raise EmittedNamesError(f"{path}:{node.lineno}: log_event's event must be a string literal")
            fields = {keyword.arg for keyword in node.keywords if keyword.arg is not None}
            events.setdefault(node.args[2].value, set()).update(fields)
    return {event: frozenset(fields) for event, fields in events.items()}


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def line_dimensions(event: str, fields: Iterable[str]) -> frozenset[str]:
    """The customDimensions of one `log_event` line with these fields: the attributes its record has
    beyond a plain LogRecord's, as OpenTelemetry's logging handler exports them."""
    logger = logging.Logger(f"kql-names.{event}", logging.DEBUG)
    keep = _Keep()
    logger.addHandler(keep)
    with correlation("a-correlation-id"):
        log_event(logger, logging.INFO, event, **dict.fromkeys(fields, "a value"))
    plain = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
    return frozenset(set(vars(keep.records[0])) - plain)


def shared_sources() -> dict[str, str]:
    return {str(path.relative_to(ROOT)): path.read_text() for path in sorted(SHARED.rglob("*.py"))}


def emitted_names(
    metrics: Iterable[MetricSpec] = METRICS, sources: Mapping[str, str] | None = None
) -> EmittedNames:
    events = logged_events(shared_sources() if sources is None else sources)
    return EmittedNames(
        {spec.name: frozenset(spec.dimensions) for spec in metrics},
        {event: line_dimensions(event, fields) for event, fields in events.items()},
    )


# -- the check ---------------------------------------------------------------------------------------------


def name_problems(queries: Mapping[str, str], emitted: EmittedNames) -> list[str]:
    """One line per name a query uses that the code does not emit. A dimension must come with a metric
    the query names (one of its dimensions) or with every event it names (a field of all their lines);
    a query that names neither may use any emitted dimension."""
    everything = frozenset().union(*emitted.metrics.values(), *emitted.events.values())
    problems = []
    for where, query in queries.items():
        used = names_used(query)
        if workspace := _WORKSPACE_NAMES.search(query):
            problems.append(
                f"{where}: {workspace.group().strip(' .[')} is a workspace name; the queries use the "
                "Application Insights tables (traces, customMetrics, customDimensions)"
            )
        for metric in sorted(used.metrics - emitted.metrics.keys()):
            problems.append(f"{where}: metric {metric!r} is not in shared/telemetry/catalog.py")
        for event in sorted(used.events - emitted.events.keys()):
            problems.append(f"{where}: event {event!r} is not logged by any log_event call in shared/")
        metrics = sorted(used.metrics & emitted.metrics.keys())
        events = sorted(used.events & emitted.events.keys())
        if not metrics and not events:
            allowed = everything
        else:
            allowed = frozenset().union(*(emitted.metrics[m] for m in metrics))
            if events:
                allowed |= frozenset.intersection(*(emitted.events[e] for e in events))
        for dimension in sorted(used.dimensions - allowed):
            sources = ", ".join(metrics + events) or "any metric or event"
            problems.append(f"{where}: dimension {dimension!r} is not emitted with {sources}")
    return problems
