"""`acs check`: read Campaign's resource metadata for every mapped resource (and probe the I/O Events
journal) and report what the sync configuration needs that Campaign lacks, each problem with the screen
and the step of docs/campaign-setup.md that fixes it. Reads only."""

from __future__ import annotations

import argparse
from collections import Counter

from shared.acs.check import FAILED, OK, WARNING, Finding
from shared.cli import base
from shared.cli.base import CommandContext, command, print_columns, print_json

_LABELS = {OK: "ok", WARNING: "WARN", FAILED: "FAIL"}


def _exit_code(findings: list[Finding]) -> int:
    levels = {f.level for f in findings}
    return base.FAILED if FAILED in levels else base.WARNINGS if WARNING in levels else base.OK


def _print_findings(context: CommandContext, findings: list[Finding]) -> None:
    """The findings as a table, then the fix of every problem."""
    rows = [[_LABELS[f.level], f.area, f.check, f.message] for f in findings]
    print_columns(context, ["LEVEL", "AREA", "CHECK", "DETAIL"], rows)
    problems = [f for f in findings if f.fix is not None and f.level != OK]
    if problems:
        context.print("To fix:")
        for finding in problems:
            context.print(f"  {finding.area} {finding.check}: {finding.fix}")


@command(
    "acs check",
    help="Check that Campaign holds what the sync config needs: resources, mapped fields and their types, "
    "key filters and their parameters, links, opt-out fields and the changed-since filter, the I/O Events "
    "journal. Reads only. Exit 0: all good, 1: warnings, 2: problems (each names the fix).",
)
def acs_check(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.validation import campaign_findings

    findings = campaign_findings(context.app)
    code = _exit_code(findings)
    if args.json:
        counts = Counter(f.level for f in findings)
        print_json(
            context,
            {
                "result": {base.OK: "ok", base.WARNINGS: "warnings", base.FAILED: "failed"}[code],
                "counts": {level: counts[level] for level in (OK, WARNING, FAILED)},
                "findings": [f.to_json() for f in findings],
            },
        )
        return code
    context.print(f"Checking Campaign ({context.app.settings.campaign_base_url}) against the sync config")
    _print_findings(context, findings)
    counts = Counter(f.level for f in findings)
    context.print(
        f"Result: {counts[FAILED]} problem(s), {counts[WARNING]} warning(s), {counts[OK]} check(s) passed."
    )
    return code
