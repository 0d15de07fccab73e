"""How verify runs: bounded parallel work under a deadline, and progress lines for a person."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from shared.flows.deadline import Deadline

_PROGRESS_SECONDS = 5.0


class Stopped(Exception):
    """The time budget ran out."""


class Progress:
    """Progress lines for an operator, at most one every few seconds (the readers run on two threads)."""

    def __init__(self, emit: Callable[[str], None] | None) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._counts = {"dynamics": 0, "campaign": 0}
        self._last = time.monotonic()

    def say(self, text: str) -> None:
        if self._emit is not None:
            with self._lock:
                self._emit(text)

    def read(self, side: str, n: int) -> None:
        with self._lock:
            self._counts[side] += n
            now = time.monotonic()
            if self._emit is None or now - self._last < _PROGRESS_SECONDS:
                return
            self._last = now
            self._emit(
                f"… {self._counts['dynamics']:,} Dynamics rows and {self._counts['campaign']:,} "
                "Campaign records read"
            )


def bounded(
    pool: ThreadPoolExecutor,
    task: Callable[[Any], Any],
    items: Iterable[Any],
    in_flight: int,
    deadline: Deadline | None,
) -> Iterator[tuple[Any, Future]]:
    """Run `task` on each item with at most `in_flight` tasks queued or running; yields (item, future) as
    they finish. Stops submitting when the deadline passes (raises `Stopped` once the running ones are
    done and yielded)."""
    pending: dict[Future, Any] = {}
    stopped = False
    context = contextvars.copy_context()
    for item in items:
        if deadline is not None and deadline.passed():
            stopped = True
            break
        if len(pending) >= in_flight:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future
        pending[pool.submit(context.copy().run, task, item)] = item
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            yield pending.pop(future), future
    if stopped:
        raise Stopped()
