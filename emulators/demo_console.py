"""What a person watching `make demo` sees: step headings, indented notes and progress bars."""

from __future__ import annotations

import sys
import time


class Console:
    """Readable progress for a person: a bar on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._last_line = 0.0
        self._last_printed = (-1, -1)

    def step(self, text: str) -> None:
        print(f"\n▶ {text}", flush=True)

    def info(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def progress(self, label: str, done: int, total: int, extra: str = "") -> None:
        width = 30
        filled = int(width * min(done, total) / max(total, 1))
        line = f"  {label:<28} [{'#' * filled}{'.' * (width - filled)}] {done:>6}/{total:<6} {extra}"
        if self.tty:
            print("\r" + line, end="", flush=True)
        elif (done, total) != self._last_printed and (
            time.monotonic() - self._last_line > 2 or done == total
        ):
            print(line, flush=True)
            self._last_line, self._last_printed = time.monotonic(), (done, total)

    def end_progress(self) -> None:
        if self.tty:
            print(flush=True)
