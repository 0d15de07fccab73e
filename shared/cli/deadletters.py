"""Dead letters: `deadletters list|show|retry|delete`.

`delete` is the privacy purge: it removes the record's dead letter (the rejected payload, every error
message and attempt) and its ledger row when that row is the dead letter's (status `dead`: its error
text may quote the rejected values). A ledger row the record has moved on from (synced, deleted,
failing again) is kept: it holds ids, a version, a content hash and opt-out flags, no field value, and
it is what keeps the sync of a live record idempotent (ordering, the Campaign key, the "unchanged"
shortcut). Run reports keep no record's values. The purge is logged with a hash of the record id, so
an erasure request can be checked against the log without the log naming the person.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from shared.cli.base import (
    FAILED,
    OK,
    WARNINGS,
    CommandContext,
    command,
    mapping_named,
    print_columns,
    print_json,
    when,
)
from shared.logs import log_event

if TYPE_CHECKING:
    from shared.store import DeadLetter

log = logging.getLogger(__name__)


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


def _letters_of(args: argparse.Namespace, context: CommandContext, record: str) -> list[DeadLetter]:
    wanted = record.lower()
    return [letter for letter in _selected_letters(args, context) if letter.record_id.lower() == wanted]


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


# -- list ---------------------------------------------------------------------------------------------


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    _letters_arguments(parser)
    parser.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")


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


# -- show ---------------------------------------------------------------------------------------------


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record", help="the record id (Dynamics row id, or event id)")
    _letters_arguments(parser)


@command(
    "deadletters show",
    help="Show one dead letter: the error, every attempt and the payload.",
    arguments=_record_arguments,
)
def deadletters_show(args: argparse.Namespace, context: CommandContext) -> int:
    letters = _letters_of(args, context, args.record)
    if not letters:
        if args.json:
            print_json(context, [])
        else:
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


# -- retry --------------------------------------------------------------------------------------------


def _retry_arguments(parser: argparse.ArgumentParser) -> None:
    _letters_arguments(parser)
    parser.add_argument("--id", dest="record", help="only this record (Dynamics row id, or event id)")


def _retry_one(context: CommandContext, letter: DeadLetter) -> tuple[str, bool]:
    from shared.flows import events, ingress

    app = context.app
    if letter.flow == ingress.FLOW:
        try:
            mapping = app.config.mapping(letter.mapping)
        except KeyError:
            return "skipped: the mapping is no longer configured", False
        outcome = app.ingress.resync(app.ingress.context(mapping), letter.record_id, mode=ingress.Mode.REPLAY)
        return outcome, outcome not in ("failed", "dead")
    if letter.flow == events.FLOW:
        outcome = app.events.replay_event(letter.payload)
        return outcome, outcome == "written"
    return f"skipped: no retry for flow {letter.flow}", False


@command(
    "deadletters retry",
    help="Retry dead letters once their cause is fixed: contacts are re-read from Dynamics and written with "
    "every field, events are delivered again; a letter is removed when its retry succeeds.",
    arguments=_retry_arguments,
)
def deadletters_retry(args: argparse.Namespace, context: CommandContext) -> int:
    letters = [
        letter
        for letter in _selected_letters(args, context)
        if args.record is None or letter.record_id.lower() == args.record.lower()
    ]
    results: list[dict[str, Any]] = []
    for letter in letters:
        outcome, success = _retry_one(context, letter)
        if success:
            context.app.store.deadletters.remove(letter.flow, letter.mapping, letter.record_id)
        results.append(
            {
                "flow": letter.flow,
                "mapping": letter.mapping,
                "record_id": letter.record_id,
                "outcome": str(outcome),
                "removed": success,
            }
        )
    fixed = sum(result["removed"] for result in results)
    kept = len(results) - fixed
    if args.json:
        print_json(context, {"retried": len(results), "fixed": fixed, "kept": kept, "letters": results})
    elif not letters:
        context.print("No dead letters to retry.")
    else:
        rows = [
            [r["flow"], r["mapping"], r["record_id"], r["outcome"], "removed" if r["removed"] else "kept"]
            for r in results
        ]
        print_columns(context, ["FLOW", "MAPPING", "RECORD", "OUTCOME", "LETTER"], rows, "")
        context.print(f"{len(letters)} retried: {fixed} fixed and removed, {kept} kept.")
    return OK if not kept else WARNINGS


# -- delete -------------------------------------------------------------------------------------------


def _delete_arguments(parser: argparse.ArgumentParser) -> None:
    _record_arguments(parser)
    parser.add_argument("--yes", action="store_true", help="confirm: really delete it")


def _record_hash(record_id: str) -> str:
    """What the purge log says instead of the id: enough to match an erasure request, not to name it."""
    return hashlib.sha256(record_id.lower().encode("utf-8")).hexdigest()[:16]


def _purge(context: CommandContext, letter: DeadLetter) -> str:
    """Delete the letter and, when it is the letter's, the ledger row; answers what became of the row."""
    from shared.store import LedgerConflict, RecordStatus

    store = context.app.store
    store.deadletters.remove(letter.flow, letter.mapping, letter.record_id)
    entry = store.ledger.get(letter.mapping, letter.record_id)
    if entry is None:
        ledger = "none"
    elif entry.status != RecordStatus.DEAD:
        ledger = f"kept ({entry.status}: no field values)"
    else:
        try:
            store.ledger.delete(letter.mapping, letter.record_id, etag=entry.etag)
            ledger = "deleted"
        except LedgerConflict:  # a writer moved the record on meanwhile: the row is live sync state
            ledger = "kept (changed meanwhile)"
    log_event(
        log,
        logging.WARNING,
        "ops.deadletter_purged",
        flow=letter.flow,
        mapping=letter.mapping,
        record_hash=_record_hash(letter.record_id),
        ledger=ledger,
    )
    return ledger


@command(
    "deadletters delete",
    help="Delete a record's dead letter for good (a privacy purge): its payload, errors and attempts, and "
    "its ledger row while that says dead. Needs --yes; logged without the record's data.",
    arguments=_delete_arguments,
)
def deadletters_delete(args: argparse.Namespace, context: CommandContext) -> int:
    letters = _letters_of(args, context, args.record)
    found = [
        {"flow": letter.flow, "mapping": letter.mapping, "record_id": letter.record_id} for letter in letters
    ]
    if not letters or not args.yes:
        if args.json:
            print_json(context, {"deleted": False, "letters": found})
        elif not letters:
            context.print(f"No dead letter for {args.record}.")
        else:
            for letter in letters:
                context.print(f"Dead letter {letter.flow} / {letter.mapping} / {letter.record_id}")
            context.print(
                "Nothing deleted: add --yes to delete the letter(s) and the record's dead ledger row."
            )
        return FAILED
    results = [
        {**found_letter, "ledger_row": _purge(context, letter)}
        for found_letter, letter in zip(found, letters, strict=True)
    ]
    if args.json:
        print_json(context, {"deleted": True, "letters": results})
        return OK
    print_columns(
        context,
        ["FLOW", "MAPPING", "RECORD", "LEDGER ROW"],
        [[r["flow"], r["mapping"], r["record_id"], r["ledger_row"]] for r in results],
        "",
    )
    context.print(f"{len(results)} dead letter(s) deleted.")
    return OK
