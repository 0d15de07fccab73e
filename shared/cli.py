"""Operator commands: `python -m shared.cli <command> [<sub-command>] [options]`.

Commands register themselves with `@command("d365 setup", help=..., arguments=...)`; the words of the
name become nested sub-commands, so a new command is one decorated function. A command receives the
parsed arguments and a `CommandContext` (output stream, the app) and answers the exit code: 0 done,
1 done with warnings, 2 failed. The app (settings, clients) is built through `shared.app.get_app()` only
when a command runs, so `--help` works without any app setting.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, TextIO

from shared.errors import ServiceError

if TYPE_CHECKING:
    from shared.app import App

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


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    sys.exit(main())
