"""The command framework of the operator CLI (see the package docstring) and what the commands share:
columns, times, mappings by name, JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from shared.errors import ServiceError

if TYPE_CHECKING:
    from shared.app import App
    from shared.mapping.model import TableMapping


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


def _program() -> str:
    """How the user called us: the `acsd365` console script, or the module."""
    return "acsd365" if Path(sys.argv[0]).name == "acsd365" else "python -m shared.cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program(), description="Operate the Campaign ⇄ Dynamics 365 integration."
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
        if "--json" not in leaf._option_string_actions:
            leaf.add_argument("--json", action="store_true", help="one JSON document instead of text")
        leaf.set_defaults(handler=spec.run)
    return parser


def _default_app() -> App:
    from shared.app import get_app

    return get_app()


def main(argv: list[str] | None = None, *, app: App | None = None, out: TextIO | None = None) -> int:
    """Parse `argv` (default: the process's arguments, as the `acsd365` console script and
    `python -m shared.cli` call it), run the command, answer its exit code. `app` replaces `get_app()`
    (tests)."""
    if argv is None:  # a process of its own: its log lines are ours to format
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    context = CommandContext(out or sys.stdout, (lambda: app) if app is not None else _default_app)
    try:
        return args.handler(args, context)
    except (ServiceError, ValueError) as exc:  # ValueError: settings or sync config, every problem listed
        return refuse(args, context, str(exc))


# -- shared helpers of the operator commands ------------------------------------------------------------


def columns(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> list[str]:
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


def print_columns(
    context: CommandContext, headers: list[str], rows: list[list[Any]], indent: str = "  "
) -> None:
    for line in columns(headers, rows, indent):
        context.print(line.rstrip())


def ago(seconds: int | None) -> str:
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


def when(value: Any) -> str:
    """A UTC timestamp (ISO text or datetime) as `2024-05-01 09:58:01`, for tables."""
    return str(value)[:19].replace("T", " ") if value else "-"


def mapping_named(context: CommandContext, name_or_table: str) -> TableMapping:
    """A table mapping by its name or by its Dynamics table (`--table contact` or `--table contacts`)."""
    config = context.app.config
    for mapping in config.tables:
        if name_or_table in (mapping.name, mapping.d365_table):
            return mapping
    known = ", ".join(f"{t.name} ({t.d365_table})" for t in config.tables)
    raise ValueError(f"no table mapping named or reading '{name_or_table}'; mapped: {known}")


def print_json(context: CommandContext, data: Any) -> None:
    context.print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def refuse(args: argparse.Namespace, context: CommandContext, message: str, **details: Any) -> int:
    """A command that cannot run as asked: `failed: <why>` (or its JSON document), exit code FAILED."""
    if args.json:
        print_json(context, {"failed": message, **details})
    else:
        context.print(f"failed: {message}")
    return FAILED


def table_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, help="Dynamics table (contact) or mapping name (contacts)")
