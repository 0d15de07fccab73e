"""`SetupAction`: one thing `d365 setup` checked, and the change that brings it in line (if any)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SetupAction:
    """One thing checked. `verb`: create / update / enable / delete (changes), ok, skip or warning."""

    verb: str
    target: str
    detail: str = ""
    apply: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def changes(self) -> bool:
        return self.apply is not None

    def describe(self, *, dry_run: bool = False) -> str:
        verb = f"would {self.verb}" if dry_run and self.changes else self.verb
        return f"{verb:<15} {self.target}" + (f" — {self.detail}" if self.detail else "")
