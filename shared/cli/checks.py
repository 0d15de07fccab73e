"""Checks that change nothing: `validate-config`, `dry-run`."""

from __future__ import annotations

import argparse
from collections import Counter

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

# -- validate-config ----------------------------------------------------------------------------------

_LEVEL_LABELS = {"ok": "ok", "warning": "WARN", "failed": "FAIL"}


@command(
    "validate-config",
    help="Check the app settings, the sync config and what they point at: credentials, tables, columns and "
    "fields with their types, change tracking, Campaign key filters. Changes nothing.",
)
def validate_config(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.validation import FAILED as CHECK_FAILED
    from shared.validation import WARNING, ConfigValidator

    if not args.json:
        context.print("Checking the configuration (nothing is changed)")
    levels: Counter[str] = Counter()
    checks = []
    for check in ConfigValidator(lambda: context.app).run():
        levels[check.level] += 1
        checks.append({"level": check.level, "area": check.area, "message": check.message})
        if args.json:
            continue
        first, *more = check.message.splitlines()
        context.print(f"  {_LEVEL_LABELS[check.level]:<4}  {check.area:<12}  {first}")
        for line in more:
            context.print(f"  {'':<4}  {'':<12}  {line.strip()}")
    total = sum(levels.values())
    code = FAILED if levels[CHECK_FAILED] else WARNINGS if levels[WARNING] else OK
    if args.json:
        print_json(
            context,
            {"checks": checks, "failed": levels[CHECK_FAILED], "warnings": levels[WARNING], "total": total},
        )
        return code
    if levels[CHECK_FAILED]:
        context.print(
            f"Result: {levels[CHECK_FAILED]} check(s) failed, {levels[WARNING]} warning(s), of {total}. "
            "Fix the failed checks before the integration runs."
        )
        return FAILED
    if levels[WARNING]:
        context.print(f"Result: {levels[WARNING]} warning(s), no failure, of {total} check(s).")
        return WARNINGS
    context.print(f"Result: all {total} checks passed.")
    return OK


# -- dry-run ------------------------------------------------------------------------------------------


def _dry_run_arguments(parser: argparse.ArgumentParser) -> None:
    table_argument(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--id", action="append", dest="ids", metavar="GUID", help="a row id (repeatable)")
    which.add_argument("--limit", type=int, default=25, help="how many rows of the table (default 25)")
    parser.add_argument("--replay", action="store_true", help="plan as a replay: every mapped field")


@command(
    "dry-run",
    help="Show what a sync would write to Campaign for some Dynamics rows, as a diff against Campaign's "
    "current records. Reads only: nothing is written to Campaign, Dynamics or the ledger.",
    arguments=_dry_run_arguments,
)
def dry_run(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.d365.odata import is_guid
    from shared.dryrun import ACTIONS, ERROR, DryRun, show_value

    bad = [i for i in args.ids or () if not is_guid(i)]
    if bad:
        return refuse(args, context, f"not a row id (GUID): {', '.join(bad)}")
    mapping = mapping_named(context, args.table)
    plans = list(
        DryRun(context.app.ingress, replay=args.replay).plan(mapping, ids=args.ids or (), limit=args.limit)
    )
    summary = Counter(plan.action for plan in plans)
    if args.json:
        print_json(
            context,
            {
                "mapping": mapping.name,
                "table": mapping.d365_table,
                "resource": mapping.acs_resource,
                "replay": args.replay,
                "records": [plan.to_dict() for plan in plans],
                "summary": {action: summary[action] for action in ACTIONS if summary[action]},
            },
        )
        return WARNINGS if summary[ERROR] else OK
    context.print(
        f"Dry run of mapping '{mapping.name}': "
        f"Dynamics {mapping.d365_table} → Campaign {mapping.acs_resource}"
        + (" as a replay" if args.replay else "")
        + ". Nothing is written."
    )
    if not plans:
        context.print("No rows.")
        return OK
    context.print(f"  {'RECORD':<36}  {'ACTION':<9}  WHY")
    for plan in plans:
        context.print(f"  {plan.record_id:<36}  {plan.action:<9}  {plan.reason}".rstrip())
        for change in plan.changes:
            context.print(f"      {change.field}: {show_value(change.old)} → {show_value(change.new)}")
    counts = ", ".join(f"{summary[a]} {a}" for a in ACTIONS if summary[a])
    context.print(f"{len(plans)} record(s): {counts}.")
    return WARNINGS if summary[ERROR] else OK
