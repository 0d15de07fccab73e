"""Records in sync: `verify` (every record compared), `resync` (one record, now), `replay` (a whole table
on the next run)."""

from __future__ import annotations

import argparse
import json

from shared.cli.base import (
    FAILED,
    OK,
    WARNINGS,
    CommandContext,
    command,
    mapping_named,
    print_json,
    refuse,
    table_argument,
)
from shared.errors import ServiceError

# -- verify -------------------------------------------------------------------------------------------


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mapping", help="only this table mapping (name or Dynamics table); default: every enabled one"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="write what Dynamics holds for every drifted record (the normal write path and ledger), "
        "then check those records again",
    )
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="a quick sample: only the first N Dynamics rows of each mapping, looked up in Campaign by key "
        "(extra Campaign records are not searched for)",
    )


@command(
    "verify",
    help="Compare Dynamics and Campaign record by record (the key and the fields that apply updates) and "
    "report drift: missing, extra and mismatched Campaign records; --repair fixes it. Prints one JSON line "
    "per mapping last (--json: only one document). Exit 0: no drift (left), 1: drift, 2: failed.",
    arguments=_verify_arguments,
)
def verify(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.flows.verify import MappingResult

    if args.limit is not None and args.limit < 1:
        return refuse(args, context, "--limit must be at least 1")
    say = (lambda text: None) if args.json else context.print
    config = context.app.config
    mappings = (
        [mapping_named(context, args.mapping)] if args.mapping else [m for m in config.tables if m.enabled]
    )
    results = []
    for mapping in mappings:
        scope = f"first {args.limit:,} row(s)" if args.limit else "every record"
        say(
            f"Verifying '{mapping.name}' (Dynamics {mapping.d365_table} ↔ Campaign {mapping.acs_resource}), "
            f"{scope}" + (", repairing drift" if args.repair else ", changing nothing")
        )
        try:
            result = context.app.verifier.verify(
                mapping,
                repair=args.repair,
                limit=args.limit,
                progress=lambda text: say(f"  {text}"),
            )
        except ServiceError as exc:
            say(f"  failed: {exc}")
            result = MappingResult(mapping.name, sample=args.limit is not None, error=str(exc))
        else:
            say(f"  {result.summary()}")
        results.append(result)
    if args.json:
        print_json(context, {"mappings": [result.to_json() for result in results]})
    else:
        for result in results:
            context.print(json.dumps(result.to_json(), default=str, ensure_ascii=False))
    if any(result.error is not None for result in results):
        return FAILED
    return WARNINGS if any(result.drift_remains for result in results) else OK


# -- resync -------------------------------------------------------------------------------------------

# What each outcome of one record's sync means to the operator who asked for it.
_OUTCOMES = {
    "created": "created in Campaign",
    "updated": "Campaign updated",
    "unchanged": "Campaign already holds this content: nothing written",
    "deleted": "gone from Dynamics: deleted from Campaign",
    "delete_not_applied": "gone from Dynamics; apply_deletes is off, so Campaign's record is kept",
    "excluded": "outside the mapping's filter: not written",
    "filtered_out_deleted": "left the mapping's filter: deleted from Campaign",
    "duplicate": "applied already: nothing written",
    "stale": "a newer version is applied already: nothing written",
    "handed_off": "another writer holds the record: it applies the newest state before it lets go",
    "failed": "failed (transient): the timer retries it with backoff",
    "dead": "rejected: a dead letter (`deadletters show <RECORD>`)",
}


def _resync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mapping", help="the table mapping: its name (contacts) or Dynamics table (contact)")
    parser.add_argument("id", help="the Dynamics row id (GUID)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would change in Campaign, field by field; write nothing",
    )
    how.add_argument(
        "--force",
        action="store_true",
        help="write even when the ledger says Campaign holds this content already (Campaign was changed "
        "outside the sync): the record is looked up by key and rewritten",
    )


@command(
    "resync",
    help="Sync one record now: read the row from Dynamics and apply it to Campaign through the normal write "
    "path (ledger, one writer per record); an unchanged record writes nothing. Exit 0: done, 1: left to "
    "another writer or planned with an error, 2: failed or dead.",
    arguments=_resync_arguments,
)
def resync(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.d365.odata import is_guid
    from shared.flows.ingress import Mode

    if not is_guid(args.id):
        return refuse(args, context, f"not a row id (GUID): {args.id}")
    mapping = mapping_named(context, args.mapping)
    record_id = args.id.lower()
    if args.dry_run:
        return _plan_resync(args, context, mapping, record_id)
    app = context.app
    ctx = app.ingress.context(mapping)
    if args.force:
        outcome = app.ingress.repair(ctx, record_id)
    else:
        outcome = app.ingress.resync(ctx, record_id, mode=Mode.RETRY)
    entry = app.store.ledger.get(mapping.name, record_id)
    code = FAILED if outcome in ("failed", "dead") else WARNINGS if outcome == "handed_off" else OK
    if args.json:
        print_json(
            context,
            {
                "mapping": mapping.name,
                "record_id": record_id,
                "outcome": str(outcome),
                "ledger": None
                if entry is None
                else {
                    "status": str(entry.status),
                    "version": entry.source_version,
                    "campaign_key": entry.target_key,
                },
            },
        )
        return code
    meaning = _OUTCOMES.get(outcome)
    context.print(
        f"Resync of '{mapping.name}' record {record_id} (Dynamics {mapping.d365_table} → Campaign "
        f"{mapping.acs_resource}): {outcome}" + (f", {meaning}" if meaning else "")
    )
    if entry is not None:
        context.print(f"  ledger now: {entry.status}" + (f" ({entry.error})" if entry.error else ""))
    return code


def _plan_resync(args: argparse.Namespace, context: CommandContext, mapping, record_id: str) -> int:
    from shared.dryrun import ERROR, DryRun, show_value

    (plan,) = DryRun(context.app.ingress).plan(mapping, ids=[record_id])
    code = WARNINGS if plan.action == ERROR else OK
    if args.json:
        print_json(context, {"mapping": mapping.name, "dry_run": True, **plan.to_dict()})
        return code
    context.print(
        f"Dry run of a resync of '{mapping.name}' record {record_id}: {plan.action}"
        + (f" ({plan.reason})" if plan.reason else "")
        + ". Nothing is written."
    )
    for change in plan.changes:
        context.print(f"  {change.field}: {show_value(change.old)} → {show_value(change.new)}")
    return code


# -- replay -------------------------------------------------------------------------------------------


@command(
    "replay",
    help="Re-sync a whole table mapping (every row, every field) on the next contacts_sync run.",
    arguments=table_argument,
)
def replay(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.flows.ingress import ReplayRefused

    mapping = mapping_named(context, args.table)
    try:
        context.app.ingress.request_replay(mapping.name)
    except ReplayRefused as exc:
        if args.json:
            print_json(context, {"mapping": mapping.name, "requested": False, "refused": str(exc)})
        else:
            context.print(f"refused: {exc}")
        return FAILED
    enabled = context.app.settings.contacts_sync_enabled
    if args.json:
        print_json(context, {"mapping": mapping.name, "requested": True, "contacts_sync_enabled": enabled})
        return OK if enabled else WARNINGS
    context.print(
        f"Replay of '{mapping.name}' ({mapping.d365_table} → {mapping.acs_resource}) requested: the next "
        "contacts_sync run re-reads every row from Dynamics and writes every mapped field to Campaign, "
        "then goes back to following changes."
    )
    if not enabled:
        context.print(
            "Warning: contacts_sync is disabled (CONTACTS_SYNC_ENABLED): nothing runs until it is on."
        )
        return WARNINGS
    return OK
