"""`d365 setup`: prepare Dynamics for the integration."""

from __future__ import annotations

import argparse

from shared.cli.base import OK, WARNINGS, CommandContext, command, print_json, refuse
from shared.errors import ServiceError

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
    from shared.setup.d365 import D365Setup
    from shared.setup.webhook import WebhookTarget

    if bool(args.webhook_url) != bool(args.function_key):
        return refuse(args, context, "--webhook-url and --function-key go together")
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
    say = (lambda text: None) if args.json else context.print
    say(
        f"Dynamics 365 setup of {settings.d365_org_url}"
        + (" (dry run: nothing is changed)" if dry_run else "")
    )
    actions = setup.plan()
    done = []
    for action in actions:
        say("  " + action.describe(dry_run=dry_run))
        step = {
            "verb": action.verb,
            "target": action.target,
            "detail": action.detail,
            "change": action.changes,
        }
        done.append(step)
        if not dry_run and action.apply is not None:
            try:
                action.apply()
            except ServiceError as exc:
                return refuse(args, context, f"{action.verb} {action.target}: {exc}", actions=done)
    changes = sum(action.changes for action in actions)
    warnings = sum(action.verb == "warning" for action in actions)
    if args.json:
        print_json(
            context,
            {
                "org_url": settings.d365_org_url,
                "dry_run": dry_run,
                "actions": done,
                "changes": changes,
                "warnings": warnings,
            },
        )
        return WARNINGS if warnings else OK
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
