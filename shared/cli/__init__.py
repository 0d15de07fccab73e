"""Operator commands: `python -m shared.cli <command> [<sub-command>] [options]`.

Commands register themselves with `@command("d365 setup", help=..., arguments=...)`; the words of the
name become nested sub-commands, so a new command is one decorated function. A command receives the
parsed arguments and a `CommandContext` (output stream, the app) and answers the exit code: 0 done,
1 done with warnings, 2 failed. The app (settings, clients) is built through `shared.app.get_app()` only
when a command runs, so `--help` works without any app setting.
"""

from shared.cli import checks, d365, records, status  # noqa: F401  (importing registers the commands)
from shared.cli.base import COMMANDS, FAILED, OK, WARNINGS, CommandContext, build_parser, command, main

__all__ = ["COMMANDS", "FAILED", "OK", "WARNINGS", "CommandContext", "build_parser", "command", "main"]
