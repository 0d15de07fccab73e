"""The integration's status for operators, as one plain dict: used by `python -m shared.cli status` and
by the `status` HTTP function (so both say the same thing).

Everything but the backlog comes from the state storage (run reports, checkpoints, the ledger, dead
letters). The backlog also reads Dynamics (a `$count` per table mapping) and the Adobe I/O journal (one
event), best effort (`shared.backlog`): while either is down the status still answers, with those
figures null and a problem line. Computing the status writes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.backlog import BacklogReader, utc_time
from shared.flows import events, ingress, optout, verify
from shared.logs import log_event
from shared.store import RecordStatus

if TYPE_CHECKING:
    from shared.app import App

log = logging.getLogger(__name__)

_SWITCHES = {
    ingress.FLOW: "contacts_sync_enabled",
    events.FLOW: "events_push_enabled",
    optout.FLOW: "optout_sync_enabled",
    verify.FLOW: "verify_sync_enabled",
}
# What a contacts_sync checkpoint's mode means for an operator.
_MODES = {
    "initial": "initial load in progress",
    "replay": "replay in progress",
    "delta": "following changes",
}


def _iso(value: Any) -> str | None:
    when = utc_time(value)
    return when.isoformat() if when else None


def _seconds_since(value: Any, now: datetime) -> int | None:
    when = utc_time(value)
    return None if when is None else max(0, int((now - when).total_seconds()))


def _last_run(report: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "run_id": report.get("run_id"),
        "outcome": report.get("outcome"),
        "started_at": report.get("started_at"),
        "ended_at": report.get("ended_at"),
        "seconds_ago": _seconds_since(report.get("ended_at") or report.get("started_at"), now),
        "counts": dict(report.get("counts") or {}),
        "errors": list(report.get("errors") or [])[:5],
        "notes": list(report.get("notes") or []),
    }


def _state(enabled: bool, last_run: dict[str, Any] | None, troubled: bool) -> str:
    """Like Adobe's workflow states, from what is stored: disabled, never run, failed, degraded, ok."""
    if not enabled:
        return "disabled"
    if last_run is None:
        return "never run"
    if last_run["outcome"] == "failed":
        return "failed"
    if troubled or last_run["outcome"] not in ("succeeded", "disabled"):
        return "degraded"
    return "ok"


class _StatusBuilder:
    def __init__(self, app: App, now: datetime) -> None:
        self.app = app
        self.store = app.store
        self.now = now
        self.backlog = BacklogReader(app, now)
        self.problems: list[str] = []

    def flow(
        self,
        name: str,
        streams: dict[str, Any],
        records: dict[str, dict[str, int]],
        *,
        failing_is_problem: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        enabled = bool(getattr(self.app.settings, _SWITCHES[name]))
        last_run = _last_run(self.store.reports.latest(name), self.now)
        dead_letters = self.store.deadletters.count(flow=name)
        failing = sum(counts.get(str(RecordStatus.FAILED), 0) for counts in records.values())
        dead = sum(counts.get(str(RecordStatus.DEAD), 0) for counts in records.values())
        troubled = bool((failing and failing_is_problem) or dead or dead_letters)
        if last_run and last_run["outcome"] == "failed":
            first = (last_run["errors"] or [{}])[0].get("error", "see the run report")
            self.problems.append(f"{name}: the last run failed: {first}")
        if failing and failing_is_problem:
            self.problems.append(f"{name}: {failing} record(s) failing (retried with backoff)")
        if dead_letters:
            self.problems.append(f"{name}: {dead_letters} dead letter(s) waiting for an operator")
        return {
            "enabled": enabled,
            "state": _state(enabled, last_run, troubled),
            "last_run": last_run,
            "streams": streams,
            "records": records,
            "dead_letters": dead_letters,
            **extra,
        }

    def contacts_sync(self) -> dict[str, Any]:
        checkpoints = self.store.checkpoints
        streams, records, tables = {}, {}, {}
        for mapping in self.app.config.tables:
            checkpoint = checkpoints.get(ingress.FLOW, mapping.name)
            replay = checkpoints.get(ingress.REPLAY_FLOW, mapping.name).position
            # No mode on a saved checkpoint: its delta token expired or was reset; a full load comes next.
            unknown = "full load next" if checkpoint.etag else "not started"
            mode = _MODES.get(checkpoint.data.get("mode"), unknown)
            streams[mapping.name] = {
                "table": mapping.d365_table,
                "resource": mapping.acs_resource,
                "enabled": mapping.enabled,
                "mode": mode,
                "updated_at": _iso(checkpoint.updated_at),
                "initial_load_completed_at": checkpoint.data.get("initial_load_completed_at"),
                "replay": replay,
            }
            records[mapping.name] = self.store.ledger.count_by_status(mapping.name)
            tables[mapping.name] = self.backlog.table(mapping, checkpoint, records[mapping.name])
        retries = sum(counts[str(RecordStatus.FAILED)] for counts in records.values())
        return self.flow(
            ingress.FLOW,
            streams,
            records,
            webhook_enabled=self.app.settings.webhook_enabled,
            backlog={"retries_waiting": retries, "tables": tables},
        )

    def events_push(self) -> dict[str, Any]:
        checkpoint = self.store.checkpoints.get(events.FLOW, events.JOURNAL_STREAM)
        # The events ledger holds only parked events (status failed) and dead ones.
        counts = self.store.ledger.count_by_status(events.PARKED)
        return self.flow(
            events.FLOW,
            {
                events.JOURNAL_STREAM: {
                    "position": checkpoint.position,
                    "updated_at": _iso(checkpoint.updated_at),
                    "expired_position": checkpoint.data.get("expired_position"),
                }
            },
            {events.PARKED: counts},
            # An event waits for its contact to reach Dynamics: normal, until it dies of old age.
            failing_is_problem=False,
            backlog={
                "events_parked": counts[str(RecordStatus.FAILED)],
                **self.backlog.journal(checkpoint.position, enabled=self.app.settings.events_push_enabled),
            },
        )

    def optout_sync(self) -> dict[str, Any]:
        checkpoint = self.store.checkpoints.get(optout.FLOW, optout.STREAM)
        return self.flow(
            optout.FLOW,
            {
                optout.STREAM: {
                    "position": checkpoint.position,
                    "updated_at": _iso(checkpoint.updated_at),
                }
            },
            {},
            direction=self.app.settings.optout_direction or self.app.config.optout.direction,
            backlog={
                "campaign_changes_read_up_to": checkpoint.position,
                "seconds_behind": _seconds_since(checkpoint.position, self.now),
                "note": "Campaign profiles changed after this time are read by the next run",
            },
        )

    def verify_sync(self) -> dict[str, Any]:
        """The drift check: what its last run found, repaired and left (drift left is a problem)."""
        flow = self.flow(verify.FLOW, {}, {}, schedule=self.app.settings.verify_schedule)
        run = flow["last_run"]
        drift = None
        if run is not None and run["outcome"] != "disabled":
            counts = run["counts"]
            drift = {
                "found": counts.get("drift", 0),
                "missing": counts.get("missing", 0),
                "extra": counts.get("extra", 0),
                "mismatched": counts.get("mismatched", 0),
                "repaired": counts.get("repaired", 0),
                "remaining": counts.get("remaining", 0),
            }
            if flow["enabled"] and drift["remaining"]:
                self.problems.append(
                    f"{verify.FLOW}: {drift['remaining']} record(s) still differ between Dynamics and "
                    "Campaign after the last run's repair (`verify` lists them)"
                )
                flow["state"] = "degraded"
            if flow["enabled"] and run["outcome"] == "stopped_for_time":
                self.problems.append(
                    f"{verify.FLOW}: the last run ran out of time before it compared every record; run "
                    "`verify --repair` from an operator shell (no time limit)"
                )
        flow["drift"] = drift
        return flow


def collect_status(app: App, *, now: datetime | None = None) -> dict[str, Any]:
    """The status of every flow: enabled, state, last run, checkpoints, ledger counts per table mapping
    (synced / excluded / deleted / failed / dead), dead letters, backlog (`shared.backlog`: changes
    waiting in Dynamics, the oldest unapplied change, the journal lag), the drift the last `verify_sync`
    run found and repaired, and the problems found (`healthy` is True when there are none). Logs one
    `ops.status` line per flow for alerting.

    The ledger counts scan each mapping's ledger rows (the status column only): cheap for
    thousands of records, seconds for millions."""
    now = now or datetime.now(UTC)
    builder = _StatusBuilder(app, now)
    flows = {
        ingress.FLOW: builder.contacts_sync(),
        events.FLOW: builder.events_push(),
        optout.FLOW: builder.optout_sync(),
        verify.FLOW: builder.verify_sync(),
    }
    for name, flow in flows.items():
        records = flow["records"].values()
        log_event(
            log,
            logging.INFO,
            "ops.status",
            flow=name,
            state=flow["state"],
            failing=sum(r.get(str(RecordStatus.FAILED), 0) for r in records),
            dead=sum(r.get(str(RecordStatus.DEAD), 0) for r in records),
            dead_letters=flow["dead_letters"],
            seconds_since_run=(flow["last_run"] or {}).get("seconds_ago"),
        )
    problems = builder.problems + builder.backlog.problems
    return {
        "generated_at": now.isoformat(),
        "healthy": not problems,
        "problems": problems,
        "flows": flows,
    }
