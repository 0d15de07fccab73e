"""A run's time budget: timer functions stop cleanly before the host's functionTimeout."""

from __future__ import annotations

from collections.abc import Callable


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    def passed(self) -> bool:
        return self.remaining() <= 0
