"""Checkpoints: `checkpoint reset`."""

from __future__ import annotations

import argparse

from shared.cli.base import FAILED, OK, CommandContext, command, print_json, when

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
    effect = _RESET_EFFECTS.get(args.flow, "its next run starts this stream over")
    document = {"flow": args.flow, "stream": args.stream, "saved_at": current.updated_at, "effect": effect}
    if current.etag is None:
        saved = sorted(f"--flow {c.flow} --stream {c.stream}" for c in checkpoints.list())
        if args.json:
            print_json(context, {**document, "reset": False, "failed": "no such checkpoint", "saved": saved})
            return FAILED
        context.print(f"No checkpoint {args.flow}/{args.stream}; nothing to reset.")
        if saved:
            context.print("Saved checkpoints: " + "; ".join(saved))
        return FAILED
    if args.yes:
        checkpoints.reset(args.flow, args.stream)
    if args.json:
        print_json(context, {**document, "reset": args.yes})
        return OK if args.yes else FAILED
    context.print(f"Checkpoint {args.flow}/{args.stream}: saved {when(current.updated_at)} UTC.")
    if not args.yes:
        context.print(f"Resetting it means: {effect}.")
        context.print("Nothing changed: add --yes to reset it.")
        return FAILED
    context.print(f"Reset: {effect}.")
    return OK
