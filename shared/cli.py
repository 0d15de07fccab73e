"""Operator commands: `python -m shared.cli <command> [<sub-command>] [options]`.

Commands register themselves with `@command("d365 setup", help=..., arguments=...)`; the words of the
name become nested sub-commands, so a new command is one decorated function. A command receives the
parsed arguments and a `CommandContext` (output stream, the app) and answers the exit code: 0 done,
1 done with warnings, 2 failed. The app (settings, clients) is built through `shared.app.get_app()` only
when a command runs, so `--help` works without any app setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

from shared.errors import ServiceError

if TYPE_CHECKING:
    from shared.app import App
    from shared.mapping.model import TableMapping
    from shared.store import DeadLetter

OK, WARNINGS, FAILED = 0, 1, 2


@dataclass
class CommandContext:
    out: TextIO
    app_factory: Callable[[], App]

    @cached_property
    def app(self) -> App:
        return self.app_factory()

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace, CommandContext], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register the decorated function as the command `name` (words separated by spaces)."""

    def register(run: Callable[[argparse.Namespace, CommandContext], int]):
        if name in COMMANDS:
            raise ValueError(f"command '{name}' is registered twice")
        COMMANDS[name] = Command(name, help, run, arguments)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.cli", description="Operate the Campaign ⇄ Dynamics 365 integration."
    )
    groups = {(): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")}
    for name in sorted(COMMANDS):
        spec = COMMANDS[name]
        words = tuple(name.split())
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                group = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{' '.join(prefix)} commands")
                groups[prefix] = group.add_subparsers(
                    dest=f"command_{depth}", required=True, metavar="COMMAND"
                )
        leaf = groups[words[:-1]].add_parser(words[-1], help=spec.help, description=spec.help)
        if spec.arguments is not None:
            spec.arguments(leaf)
        leaf.set_defaults(handler=spec.run)
    return parser


def _default_app() -> App:
    from shared.app import get_app

    return get_app()


def main(argv: list[str] | None = None, *, app: App | None = None, out: TextIO | None = None) -> int:
    """Parse `argv`, run the command, answer its exit code. `app` replaces `get_app()` (tests)."""
    args = build_parser().parse_args(argv)
    context = CommandContext(out or sys.stdout, (lambda: app) if app is not None else _default_app)
    try:
        return args.handler(args, context)
    except ServiceError as exc:
        context.print(f"failed: {exc}")
        return FAILED
    except ValueError as exc:  # invalid settings or sync config: their messages list every problem
        context.print(f"failed: {exc}")
        return FAILED


# -- d365 setup --------------------------------------------------------------------------------------


def _setup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    parser.add_argument(
        "--webhook-url",
        help="URL of the webhook_d365 function, e.g. https://<app>.azurewebsites.net/api/webhook_d365",
    )
    parser.add_argument("--function-key", help="a function key of webhook_d365 (sent as its code)")
    parser.add_argument(
        "--solution",
        help="unique name of the solution to add the activity tables to (its publisher prefix must be acs)",
    )


@command(
    "d365 setup",
    help="Create the activity tables, enable change tracking and register the webhook in Dynamics "
    "(idempotent: a second run changes nothing).",
    arguments=_setup_arguments,
)
def d365_setup(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.setup.d365 import D365Setup, WebhookTarget

    if bool(args.webhook_url) != bool(args.function_key):
        context.print("failed: --webhook-url and --function-key go together")
        return FAILED
    settings = context.app.settings
    webhook = None
    if args.webhook_url:
        secret = settings.webhook_shared_secret
        webhook = WebhookTarget(
            url=args.webhook_url,
            function_key=args.function_key,
            shared_secret=secret.get_secret_value() if secret else None,
            secret_header=settings.webhook_secret_header,
        )
    setup = D365Setup(
        dataverse=context.app.dataverse,
        config=context.app.config,
        webhook=webhook,
        optout_direction=settings.optout_direction,
        solution=args.solution,
    )
    dry_run = args.dry_run
    context.print(
        f"Dynamics 365 setup of {settings.d365_org_url}"
        + (" (dry run: nothing is changed)" if dry_run else "")
    )
    actions = setup.plan()
    for action in actions:
        context.print("  " + action.describe(dry_run=dry_run))
        if not dry_run and action.apply is not None:
            try:
                action.apply()
            except ServiceError as exc:
                context.print(f"failed: {action.verb} {action.target}: {exc}")
                return FAILED
    changes = sum(action.changes for action in actions)
    warnings = sum(action.verb == "warning" for action in actions)
    if not changes:
        context.print("Nothing to change: Dynamics is already set up.")
    elif dry_run:
        context.print(f"{changes} change(s) would be made; run without --dry-run to make them.")
    else:
        context.print(f"Done: {changes} change(s) made.")
    if warnings:
        context.print(f"{warnings} warning(s): see above.")
        return WARNINGS
    return OK


# -- shared helpers of the operator commands ------------------------------------------------------------


def _columns(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> list[str]:
    """Rows aligned under their headers (the last column is not padded)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        indent
        + "  ".join(
            c.ljust(w) if i < len(row) - 1 else c for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]


def _print_columns(
    context: CommandContext, headers: list[str], rows: list[list[Any]], indent: str = "  "
) -> None:
    for line in _columns(headers, rows, indent):
        context.print(line.rstrip())


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size, smaller, smaller_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if seconds >= size:
            rest = (seconds % size) // smaller_size
            return f"{seconds // size}{unit}" + (f" {rest}{smaller}" if rest else "") + " ago"
    return f"{seconds}s ago"


def _when(value: Any) -> str:
    """A UTC timestamp (ISO text or datetime) as `2024-05-01 09:58:01`, for tables."""
    return str(value)[:19].replace("T", " ") if value else "-"


def _mapping(context: CommandContext, name_or_table: str) -> TableMapping:
    """A table mapping by its name or by its Dynamics table (`--table contact` or `--table contacts`)."""
    config = context.app.config
    for mapping in config.tables:
        if name_or_table in (mapping.name, mapping.d365_table):
            return mapping
    known = ", ".join(f"{t.name} ({t.d365_table})" for t in config.tables)
    raise ValueError(f"no table mapping named or reading '{name_or_table}'; mapped: {known}")


def _json(context: CommandContext, data: Any) -> None:
    context.print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


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

    context.print("Checking the configuration (nothing is changed)")
    levels: Counter[str] = Counter()
    for check in ConfigValidator(lambda: context.app).run():
        levels[check.level] += 1
        first, *more = check.message.splitlines()
        context.print(f"  {_LEVEL_LABELS[check.level]:<4}  {check.area:<12}  {first}")
        for line in more:
            context.print(f"  {'':<4}  {'':<12}  {line.strip()}")
    total = sum(levels.values())
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


def _table_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, help="Dynamics table (contact) or mapping name (contacts)")


def _dry_run_arguments(parser: argparse.ArgumentParser) -> None:
    _table_argument(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--id", action="append", dest="ids", metavar="GUID", help="a row id (repeatable)")
    which.add_argument("--limit", type=int, default=25, help="how many rows of the table (default 25)")
    parser.add_argument("--replay", action="store_true", help="plan as a replay: every mapped field")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


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
        context.print(f"failed: not a row id (GUID): {', '.join(bad)}")
        return FAILED
    mapping = _mapping(context, args.table)
    plans = list(
        DryRun(context.app.ingress, replay=args.replay).plan(mapping, ids=args.ids or (), limit=args.limit)
    )
    summary = Counter(plan.action for plan in plans)
    if args.json:
        _json(
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
    "per mapping last. Exit 0: no drift (left), 1: drift, 2: failed.",
    arguments=_verify_arguments,
)
def verify(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.flows.verify import MappingResult

    if args.limit is not None and args.limit < 1:
        context.print("failed: --limit must be at least 1")
        return FAILED
    config = context.app.config
    mappings = [_mapping(context, args.mapping)] if args.mapping else [m for m in config.tables if m.enabled]
    results = []
    for mapping in mappings:
        scope = f"first {args.limit:,} row(s)" if args.limit else "every record"
        context.print(
            f"Verifying '{mapping.name}' (Dynamics {mapping.d365_table} ↔ Campaign {mapping.acs_resource}), "
            f"{scope}" + (", repairing drift" if args.repair else ", changing nothing")
        )
        try:
            result = context.app.verifier.verify(
                mapping,
                repair=args.repair,
                limit=args.limit,
                progress=lambda text: context.print(f"  {text}"),
            )
        except ServiceError as exc:
            context.print(f"  failed: {exc}")
            result = MappingResult(mapping.name, sample=args.limit is not None, error=str(exc))
        else:
            context.print(f"  {result.summary()}")
        results.append(result)
    for result in results:
        context.print(json.dumps(result.to_json(), default=str, ensure_ascii=False))
    if any(result.error is not None for result in results):
        return FAILED
    return WARNINGS if any(result.drift_remains for result in results) else OK


# -- status -------------------------------------------------------------------------------------------


def _json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


@command(
    "status",
    help="Per flow: state, last run, checkpoint positions, backlog, ledger counts and dead letters.",
    arguments=_json_argument,
)
def status(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.ops import collect_status

    report = collect_status(context.app)
    if args.json:
        _json(context, report)
        return OK if report["healthy"] else WARNINGS
    flows = report["flows"]
    verdict = "healthy" if report["healthy"] else f"{len(report['problems'])} problem(s)"
    context.print(f"Integration status at {_when(report['generated_at'])} UTC: {verdict}")
    context.print()
    rows = []
    for name, flow in flows.items():
        run = flow["last_run"] or {}
        rows.append(
            [
                name,
                flow["state"],
                _when(run.get("ended_at")),
                run.get("outcome"),
                _ago(run.get("seconds_ago")),
                flow["dead_letters"],
            ]
        )
    _print_columns(context, ["FLOW", "STATE", "LAST RUN (UTC)", "OUTCOME", "ENDED", "DEAD LETTERS"], rows, "")
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
                _when(stream["updated_at"]),
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
    _print_columns(context, headers, rows)
    backlog = flow["backlog"]
    context.print(
        f"  Backlog: {backlog['retries_waiting']} record(s) wait for a retry; changes not yet read from "
        "Dynamics: unknown (change tracking cannot be counted without reading it)"
    )
    _print_last_counts(context, flow)


def _print_events_push(context: CommandContext, flow: dict[str, Any]) -> None:
    context.print()
    context.print("events_push (Campaign email events → Dynamics activities)")
    journal = flow["streams"]["journal"]
    counts = flow["records"]["events"]
    position = journal["position"] or "not started"
    context.print(f"  Journal position: {position} (saved {_when(journal['updated_at'])})")
    context.print(
        f"  Parked events (waiting for their contact): {counts['failed']}; dead: {counts['dead']}; "
        "events not yet read from the journal: unknown"
    )
    _print_last_counts(context, flow)


def _print_optout_sync(context: CommandContext, flow: dict[str, Any]) -> None:
    context.print()
    context.print(f"optout_sync (opt-outs, direction {flow['direction']})")
    backlog = flow["backlog"]
    if backlog["campaign_changes_read_up_to"]:
        behind = _ago(backlog["seconds_behind"]).removesuffix(" ago")
        context.print(
            f"  Campaign changes read up to {_when(backlog['campaign_changes_read_up_to'])} ({behind} behind)"
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


# -- replay -------------------------------------------------------------------------------------------


@command(
    "replay",
    help="Re-sync a whole table mapping (every row, every field) on the next contacts_sync run.",
    arguments=_table_argument,
)
def replay(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.flows.ingress import ReplayRefused

    mapping = _mapping(context, args.table)
    try:
        context.app.ingress.request_replay(mapping.name)
    except ReplayRefused as exc:
        context.print(f"refused: {exc}")
        return FAILED
    context.print(
        f"Replay of '{mapping.name}' ({mapping.d365_table} → {mapping.acs_resource}) requested: the next "
        "contacts_sync run re-reads every row from Dynamics and writes every mapped field to Campaign, "
        "then goes back to following changes."
    )
    if not context.app.settings.contacts_sync_enabled:
        context.print(
            "Warning: contacts_sync is disabled (CONTACTS_SYNC_ENABLED): nothing runs until it is on."
        )
        return WARNINGS
    return OK


# -- dead letters --------------------------------------------------------------------------------------


def _letters_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flow", choices=["contacts_sync", "events_push"], help="only this flow's letters")
    parser.add_argument("--table", help="only this mapping's letters (Dynamics table or mapping name)")


def _selected_letters(args: argparse.Namespace, context: CommandContext) -> Iterator[DeadLetter]:
    mapping = None
    if args.table:
        mapping = "events" if args.table == "events" else _mapping(context, args.table).name
    letters = context.app.store.deadletters.iter_letters(
        flow=args.flow, mapping=mapping if args.flow else None
    )
    for letter in letters:
        if mapping is None or letter.mapping == mapping:
            yield letter


_REQUEST_LINE = re.compile(r"\b(?:GET|POST|PUT|PATCH|DELETE) \S+: ")


def _error_text(letter: DeadLetter, *, width: int | None = None) -> str:
    """The letter's error on one line; with `width`, without the request URL and cut in the middle, so
    the service's prefix (`[campaign 500 XTK-...]`) and its last words both show."""
    error = letter.error or {}
    text = " ".join(str(error.get("message") or error.get("type") or "unknown error").split())
    if width is None:
        return text
    text = _REQUEST_LINE.sub("", text)
    if len(text) <= width:
        return text
    head = text[: text.index("] ") + 2] if text.startswith("[") and "] " in text else ""
    tail = text[len(text) - (width - len(head) - 2) :]
    return head + "… " + tail.split(" ", 1)[-1]  # from a word's start


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    _letters_arguments(parser)
    parser.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    _json_argument(parser)


@command(
    "deadletters list",
    help="List the dead letters (records and events that need an operator).",
    arguments=_list_arguments,
)
def deadletters_list(args: argparse.Namespace, context: CommandContext) -> int:
    letters = list(itertools.islice(_selected_letters(args, context), args.limit))
    if args.json:
        _json(
            context,
            [
                {
                    "flow": letter.flow,
                    "mapping": letter.mapping,
                    "record_id": letter.record_id,
                    "error": letter.error,
                    "attempt_count": len(letter.attempts),
                    "created_at": letter.created_at,
                    "updated_at": letter.updated_at,
                }
                for letter in letters
            ],
        )
        return OK
    if not letters:
        context.print("No dead letters.")
        return OK
    rows = [
        [
            letter.flow,
            letter.mapping,
            letter.record_id,
            len(letter.attempts),
            _when(letter.updated_at),
            _error_text(letter, width=90),
        ]
        for letter in letters
    ]
    _print_columns(context, ["FLOW", "MAPPING", "RECORD", "ATTEMPTS", "LAST FAILED (UTC)", "ERROR"], rows, "")
    more = " (limit reached: use --limit)" if len(letters) == args.limit else ""
    context.print(
        f"{len(letters)} dead letter(s){more}. "
        "Details: `deadletters show <RECORD>`; once the cause is fixed: `deadletters retry`."
    )
    return OK


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record", help="the record id (Dynamics row id, or event id)")
    _letters_arguments(parser)
    _json_argument(parser)


@command(
    "deadletters show",
    help="Show one dead letter: the error, every attempt and the payload.",
    arguments=_show_arguments,
)
def deadletters_show(args: argparse.Namespace, context: CommandContext) -> int:
    wanted = args.record.lower()
    letters = [letter for letter in _selected_letters(args, context) if letter.record_id.lower() == wanted]
    if not letters:
        context.print(f"No dead letter for {args.record}.")
        return FAILED
    if args.json:
        _json(context, [asdict(letter) for letter in letters])
        return OK
    ledger = context.app.store.ledger
    for letter in letters:
        entry = ledger.get(letter.mapping, letter.record_id)
        context.print(f"Dead letter {letter.flow} / {letter.mapping} / {letter.record_id}")
        error = letter.error or {}
        details = [
            ("first failed", _when(letter.created_at)),
            ("last failed", _when(letter.updated_at)),
            ("error", f"{error.get('type', '')}: {_error_text(letter)}"),
            ("ledger now", str(entry.status) if entry else "no ledger row"),
        ]
        details += [(k, error[k]) for k in ("status", "code") if error.get(k)]
        for label, value in details:
            context.print(f"  {label:<13} {value}")
        context.print(f"  Attempts ({len(letter.attempts)}):")
        for attempt in letter.attempts:
            context.print(f"    {_when(attempt.get('at'))}  {' '.join(str(attempt.get('message')).split())}")
        context.print("  Payload:")
        for line in json.dumps(letter.payload, indent=2, default=str, ensure_ascii=False).splitlines():
            context.print(f"    {line}")
    return OK


def _retry_arguments(parser: argparse.ArgumentParser) -> None:
    _letters_arguments(parser)
    parser.add_argument("--id", dest="record", help="only this record (Dynamics row id, or event id)")


@command(
    "deadletters retry",
    help="Retry dead letters once their cause is fixed: contacts are re-read from Dynamics and written with "
    "every field, events are delivered again; a letter is removed when its retry succeeds.",
    arguments=_retry_arguments,
)
def deadletters_retry(args: argparse.Namespace, context: CommandContext) -> int:
    from shared.flows import events, ingress

    app = context.app
    letters = [
        letter
        for letter in _selected_letters(args, context)
        if args.record is None or letter.record_id.lower() == args.record.lower()
    ]
    if not letters:
        context.print("No dead letters to retry.")
        return OK
    rows, fixed = [], 0
    for letter in letters:
        if letter.flow == ingress.FLOW:
            try:
                mapping = app.config.mapping(letter.mapping)
            except KeyError:
                outcome, success = "skipped: the mapping is no longer configured", False
            else:
                ctx = app.ingress.context(mapping)
                outcome = app.ingress.resync(ctx, letter.record_id, mode=ingress.Mode.REPLAY)
                success = outcome not in ("failed", "dead")
        elif letter.flow == events.FLOW:
            outcome = app.events.replay_event(letter.payload)
            success = outcome == "written"
        else:
            outcome, success = f"skipped: no retry for flow {letter.flow}", False
        if success:
            app.store.deadletters.remove(letter.flow, letter.mapping, letter.record_id)
            fixed += 1
        rows.append(
            [letter.flow, letter.mapping, letter.record_id, outcome, "removed" if success else "kept"]
        )
    _print_columns(context, ["FLOW", "MAPPING", "RECORD", "OUTCOME", "LETTER"], rows, "")
    kept = len(letters) - fixed
    context.print(f"{len(letters)} retried: {fixed} fixed and removed, {kept} kept.")
    return OK if not kept else WARNINGS


# -- checkpoint reset ---------------------------------------------------------------------------------

_RESET_EFFECTS = {
    "contacts_sync": "the next contacts_sync run re-reads every row of this mapping from Dynamics (a full "
    "load: rows unchanged since their last sync cost no Campaign call)",
    "events_push": "the next events_push run reads the journal from its oldest retained event (up to 7 days "
    "back; activities are upserted by event id, so events written before are not duplicated)",
    "optout_sync": "the next optout_sync run re-reads every Campaign profile",
    "replay": "a pending or running replay request of this mapping is dropped",
}


def _checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flow", required=True, help="contacts_sync, events_push, optout_sync or replay")
    parser.add_argument(
        "--stream",
        required=True,
        help="the mapping name (contacts_sync, replay), journal "
        "(events_push) or campaign_profiles (optout_sync)",
    )
    parser.add_argument("--yes", action="store_true", help="confirm: really reset it")


@command(
    "checkpoint reset",
    help="Forget where a flow is in a stream, so its next run starts that stream over.",
    arguments=_checkpoint_arguments,
)
def checkpoint_reset(args: argparse.Namespace, context: CommandContext) -> int:
    checkpoints = context.app.store.checkpoints
    current = checkpoints.get(args.flow, args.stream)
    if current.etag is None:
        saved = sorted(f"--flow {c.flow} --stream {c.stream}" for c in checkpoints.list())
        context.print(f"No checkpoint {args.flow}/{args.stream}; nothing to reset.")
        if saved:
            context.print("Saved checkpoints: " + "; ".join(saved))
        return FAILED
    effect = _RESET_EFFECTS.get(args.flow, "its next run starts this stream over")
    context.print(f"Checkpoint {args.flow}/{args.stream}: saved {_when(current.updated_at)} UTC.")
    if not args.yes:
        context.print(f"Resetting it means: {effect}.")
        context.print("Nothing changed: add --yes to reset it.")
        return FAILED
    checkpoints.reset(args.flow, args.stream)
    context.print(f"Reset: {effect}.")
    return OK


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    sys.exit(main())
