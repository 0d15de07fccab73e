"""Figures, their goals and the printed table; `bench/results/latest.json` and the READMEs' tables."""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
PROJECT_README = Path(__file__).resolve().parents[1] / "README.md"
_TABLE_START, _TABLE_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
_SUMMARY_START, _SUMMARY_END = "<!-- bench-summary:start -->", "<!-- bench-summary:end -->"
_SYMBOLS = {">=": "≥", "<=": "≤", "<": "<", "==": "="}


@dataclass(frozen=True)
class Goal:
    op: str  # ">=", "<=", "<" or "=="
    target: float
    why: str = ""  # e.g. "Adobe's is 2"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return {
            ">=": value >= self.target,
            "<=": value <= self.target,
            "<": value < self.target,
            "==": value == self.target,
        }[self.op]

    def __str__(self) -> str:
        text = f"{_SYMBOLS[self.op]} {self.target:g}"
        return f"{text} ({self.why})" if self.why else text


@dataclass
class Figure:
    scenario: str
    name: str
    value: float | None
    unit: str
    goal: Goal | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        return self.goal.met(self.value) if self.goal else None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = str(self.goal) if self.goal else None
        data["met"] = self.met
        return data


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if "model name" in line
            ),
            "",
        )
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo.read_text()).group(1))
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{os.cpu_count()} CPU ({model or platform.processor() or platform.machine()}){memory}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def _value(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _verdict(figure: Figure) -> str:
    return {True: "met", False: "MISSED", None: ""}[figure.met]


def text_table(figures: list[Figure]) -> str:
    rows = [["#", "figure", "value", "unit", "goal", "met"]]
    rows += [
        [f.scenario, f.name, _value(f.value), f.unit, str(f.goal) if f.goal else "", _verdict(f)]
        for f in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(figures: list[Figure]) -> str:
    lines = ["| # | figure | value | unit | goal | met |", "|---|---|---:|---|---|---|"]
    lines += [
        f"| {f.scenario} | {f.name} | {_value(f.value)} | {f.unit} | {f.goal or ''} | {_verdict(f)} |"
        for f in figures
    ]
    return "\n".join(lines)


def notes(figures: list[Figure]) -> list[str]:
    """One line per figure that carries a note; missed goals first, said plainly."""
    missed = [f for f in figures if f.met is False]
    lines = [f"MISSED {f.scenario} {f.name}: {f.note or 'no reason recorded'}" for f in missed]
    lines += [f"{f.scenario} {f.name}: {f.note}" for f in figures if f.note and f.met is not False]
    return lines


def save(figures: list[Figure], settings: dict[str, Any], *, wall_seconds: float) -> dict[str, Any]:
    document = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "wall_seconds": round(wall_seconds, 1),
        "settings": settings,
        "results": [f.as_json() for f in figures],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    return document


def _replace_block(readme: Path, start: str, end: str, lines: list[str]) -> None:
    """Replace what stands between the markers `start` and `end` in `readme`, if it has both."""
    text = readme.read_text() if readme.exists() else ""
    if start not in text or end not in text:
        return
    head, tail = text.index(start), text.index(end) + len(end)
    readme.write_text(text[:head] + "\n".join([start, *lines, end]) + text[tail:])


def update_readmes(
    document: dict[str, Any],
    figures: list[Figure],
    settings_lines: list[str],
    *,
    bench_readme: Path = README,
    project_readme: Path = PROJECT_README,
) -> None:
    """This run in the READMEs: every figure, the settings and the notes in `bench/README.md`; the
    figures that have a goal, and any goal missed with its reason, in the project's README."""
    settings = document["settings"]
    latest = (
        f"Latest run: {document['date']} on {document['machine']}; `python -m bench` took "
        f"{document['wall_seconds'] / 60:.1f} min (load average {settings['load_average_at_start']} at "
        f"the start, {settings['load_average_at_end']} at the end)."
    )
    _replace_block(
        bench_readme,
        _TABLE_START,
        _TABLE_END,
        [
            latest,
            "",
            "Settings:",
            "",
            *[f"- {line}" for line in settings_lines],
            "",
            markdown_table(figures),
            "",
            *([f"- {line}" for line in notes(figures)] or ["- every goal met"]),
        ],
    )
    with_goals = [f for f in figures if f.goal]
    missed = [f"- MISSED {f.scenario} {f.name}: {f.note}" for f in with_goals if f.met is False]
    _replace_block(
        project_readme,
        _SUMMARY_START,
        _SUMMARY_END,
        [latest, "", markdown_table(with_goals), "", *(missed or ["Every goal met."])],
    )
