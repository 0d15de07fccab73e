"""Operating on records and streams: `replay`, `deadletters list|show|retry`, `checkpoint reset`."""

from __future__ import annotations

import argparse
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING

from shared.cli.base import (
    FAILED,
    OK,
    WARNINGS,
    CommandContext,
    command,
    json_argument,
    mapping_named,
    print_columns,
    print_json,
    table_argument,
    when,
)

if TYPE_CHECKING:
    from shared.store import DeadLetter

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
        mapping = "events" if args.table == "events" else mapping_named(context, args.table).name
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
    json_argument(parser)


@command(
    "deadletters list",
    help="List the dead letters (records and events that need an operator).",
    arguments=_list_arguments,
)
def deadletters_list(args: argparse.Namespace, context: CommandContext) -> int:
    letters = list(itertools.islice(_selected_letters(args, context), args.limit))
    if args.json:
        print_json(
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
            when(letter.updated_at),
            _error_text(letter, width=90),
        ]
        for letter in letters
    ]
    print_columns(context, ["FLOW", "MAPPING", "RECORD", "ATTEMPTS", "LAST FAILED (UTC)", "ERROR"], rows, "")
    more = " (limit reached: use --limit)" if len(letters) == args.limit else ""
    context.print(
        f"{len(letters)} dead letter(s){more}. "
        "Details: `deadletters show <RECORD>`; once the cause is fixed: `deadletters retry`."
    )
    return OK


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record", help="the record id (Dynamics row id, or event id)")
    _letters_arguments(parser)
    json_argument(parser)


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
        print_json(context, [asdict(letter) for letter in letters])
        return OK
    ledger = context.app.store.ledger
    for letter in letters:
        entry = ledger.get(letter.mapping, letter.record_id)
        context.print(f"Dead letter {letter.flow} / {letter.mapping} / {letter.record_id}")
        error = letter.error or {}
        details = [
            ("first failed", when(letter.created_at)),
            ("last failed", when(letter.updated_at)),
            ("error", f"{error.get('type', '')}: {_error_text(letter)}"),
            ("ledger now", str(entry.status) if entry else "no ledger row"),
        ]
        details += [(k, error[k]) for k in ("status", "code") if error.get(k)]
        for label, value in details:
            context.print(f"  {label:<13} {value}")
        context.print(f"  Attempts ({len(letter.attempts)}):")
        for attempt in letter.attempts:
            context.print(f"    {when(attempt.get('at'))}  {' '.join(str(attempt.get('message')).split())}")
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
    print_columns(context, ["FLOW", "MAPPING", "RECORD", "OUTCOME", "LETTER"], rows, "")
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
    context.print(f"Checkpoint {args.flow}/{args.stream}: saved {when(current.updated_at)} UTC.")
    if not args.yes:
        context.print(f"Resetting it means: {effect}.")
        context.print("Nothing changed: add --yes to reset it.")
        return FAILED
    checkpoints.reset(args.flow, args.stream)
    context.print(f"Reset: {effect}.")
    return OK
