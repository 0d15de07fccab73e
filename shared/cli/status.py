"""`status`: the integration's health, as text or JSON."""

from __future__ import annotations

import argparse
from typing import Any

from shared.cli.base import (
    OK,
    WARNINGS,
    CommandContext,
    ago,
    command,
    print_columns,
    print_json,
    when,
)

# -- status -------------------------------------------------------------------------------------------


@command(
    "status",
    help="Per flow: state, last run, checkpoint positions, backlog (changes waiting in Dynamics, the oldest "
    "unapplied change, the journal lag), ledger counts and dead letters. Exit 0: healthy, 1: problems.",
)
def status(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.ops import collect_status

    report = collect_status(context.app)
    if args.json:
        print_json(context, report)
        return OK if report["healthy"] else WARNINGS
    flows = report["flows"]
    verdict = "healthy" if report["healthy"] else f"{len(report['problems'])} problem(s)"
    context.print(f"Integration status at {when(report['generated_at'])} UTC: {verdict}")
    context.print()
    rows = []
    for name, flow in flows.items():
        run = flow["last_run"] or {}
        rows.append(
            [
                name,
                flow["state"],
                when(run.get("ended_at")),
                run.get("outcome"),
                ago(run.get("seconds_ago")),
                flow["dead_letters"],
            ]
        )
    print_columns(context, ["FLOW", "STATE", "LAST RUN (UTC)", "OUTCOME", "ENDED", "DEAD LETTERS"], rows, "")
    _print_contacts_sync(context, flows["contacts_sync"])
    _print_events_push(context, flows["events_push"])
    _print_optout_sync(context, flows["optout_sync"])
    _print_verify_sync(context, flows["verify_sync"])
    if report["problems"]:
        context.print()
        context.print("Problems:")
        for problem in report["problems"]:
            context.print(f"  - {problem}")
    return OK if report["healthy"] else WARNINGS


def _print_last_counts(context: CommandContext, flow: dict[str, Any]) -> None:
    run = flow["last_run"]
    if run and run["counts"]:
        counts = ", ".join(f"{key} {value}" for key, value in sorted(run["counts"].items()))
        context.print(f"  Last run counted: {counts}")
    for note in (run or {}).get("notes", []):
        context.print(f"  Note: {note}")


def _print_contacts_sync(context: CommandContext, flow: dict[str, Any]) -> None:
    context.print()
    webhook = "on" if flow["webhook_enabled"] else "off"
    context.print(f"contacts_sync (Dynamics → Campaign; webhook {webhook})")
    rows = []
    for name, stream in flow["streams"].items():
        counts = flow["records"][name]
        position = stream["mode"] + (f", replay {stream['replay']}" if stream["replay"] else "")
        if not stream["enabled"]:
            position += " (mapping disabled)"
        rows.append(
            [
                name,
                stream["table"],
                position,
                when(stream["updated_at"]),
                counts["synced"],
                counts["excluded"],
                counts["deleted"],
                counts["failed"],
                counts["dead"],
            ]
        )
    headers = [
        "MAPPING",
        "TABLE",
        "POSITION",
        "CHECKPOINT SAVED",
        "IN SYNC",
        "EXCLUDED",
        "DELETED",
        "FAILING",
        "DEAD",
    ]
    print_columns(context, headers, rows)
    context.print()
    backlog = flow["backlog"]
    rows = [
        [
            name,
            _waiting(table["changes_waiting"], table["changes_waiting_more"]),
            ago(table["oldest_unapplied_seconds"]).removesuffix(" ago"),
            table["failed"],
            table["dead"],
        ]
        for name, table in backlog["tables"].items()
    ]
    print_columns(context, ["BACKLOG", "CHANGES WAITING", "OLDEST UNAPPLIED", "FAILING", "DEAD"], rows)
    _print_last_counts(context, flow)


def _waiting(count: int | None, more: bool | None) -> str:
    """Dataverse counts up to 5,000 rows."""
    if count is None:
        return "unknown"
    return f"≥ {count}" if more else str(count)


def _print_events_push(context: CommandContext, flow: dict[str, Any]) -> None:
    context.print()
    context.print("events_push (Campaign email events → Dynamics activities)")
    journal = flow["streams"]["journal"]
    counts = flow["records"]["events"]
    position = journal["position"] or "not started"
    context.print(f"  Journal position: {position} (saved {when(journal['updated_at'])})")
    backlog = flow["backlog"]
    if backlog["journal_caught_up"]:
        lag = "none (every event read)"
    elif backlog["journal_caught_up"] is None:
        lag = "unknown" if flow["enabled"] else "unknown (events_push is off)"
    else:
        lag = ago(backlog["journal_lag_seconds"]).removesuffix(" ago")
        lag = (
            f"{lag} (oldest unread event)" if backlog["journal_lag_seconds"] is not None else "events waiting"
        )
    context.print(f"  Journal lag: {lag}")
    context.print(f"  Parked events (waiting for their contact): {counts['failed']}; dead: {counts['dead']}")
    _print_last_counts(context, flow)


def _print_optout_sync(context: CommandContext, flow: dict[str, Any]) -> None:
    context.print()
    context.print(f"optout_sync (opt-outs, direction {flow['direction']})")
    backlog = flow["backlog"]
    if backlog["campaign_changes_read_up_to"]:
        behind = ago(backlog["seconds_behind"]).removesuffix(" ago")
        context.print(
            f"  Campaign changes read up to {when(backlog['campaign_changes_read_up_to'])} ({behind} behind)"
        )
    else:
        context.print("  Campaign changes: not read yet")
    _print_last_counts(context, flow)


def _print_verify_sync(context: CommandContext, flow: dict[str, Any]) -> None:
    context.print()
    context.print(f"verify_sync (drift check with repair; schedule {flow['schedule']})")
    drift = flow["drift"]
    if drift is None:
        switch = "" if flow["enabled"] else " (VERIFY_SYNC_ENABLED is off)"
        context.print(f"  No drift check run yet{switch}")
    else:
        context.print(
            f"  Last run: {drift['found']} drifted record(s) found ({drift['missing']} missing, "
            f"{drift['extra']} extra, {drift['mismatched']} mismatched), {drift['repaired']} repaired, "
            f"{drift['remaining']} still drifting"
        )
    for note in (flow["last_run"] or {}).get("notes", []):
        context.print(f"  Note: {note}")
