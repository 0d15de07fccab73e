"""Operator commands: `python -m shared.cli <command> [<sub-command>] [options]`.

Also the `acsd365` console script (pyproject.toml, installed by `make setup`). One module per command
group: `d365` (d365 setup), `acs` (acs check), `status`, `records` (verify, resync, replay),
`deadletters` (list, show, retry, delete), `checkpoints` (checkpoint reset), `checks` (validate-config,
dry-run).

Commands register themselves with `@command("d365 setup", help=..., arguments=...)`; the words of the
name become nested sub-commands, so a new command is one decorated function. Every command takes
`--json` (one JSON document instead of text; added by the framework) and `--help`. A command receives
the parsed arguments and a `CommandContext` (output stream, the app) and answers the exit code: 0 done,
1 done with warnings, 2 failed. The app (settings, clients) is built through `shared.app.get_app()` only
when a command runs, so `--help` works without any app setting.
"""

from shared.cli import (  # noqa: F401  (importing registers the commands)
    acs,
    checkpoints,
    checks,
    d365,
    deadletters,
    records,
    status,
)
from shared.cli.base import COMMANDS, FAILED, OK, WARNINGS, CommandContext, build_parser, command, main

__all__ = ["COMMANDS", "FAILED", "OK", "WARNINGS", "CommandContext", "build_parser", "command", "main"]
