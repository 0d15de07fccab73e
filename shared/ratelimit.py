"""Client-side limits of one remote service: requests per second, evenly paced (optionally this
process's share of a budget across processes, `shared.store.budget`), and requests in flight, served in
arrival order."""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Protocol


class FairSlots:
    """A bounded semaphore that serves waiting threads first come, first served. `threading.Semaphore`
    lets a thread that comes later take a freed slot before a woken waiter does, so a request back from
    a Retry-After could wait behind thousands of newer ones; here a freed slot goes to the oldest waiter."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._free = self._size = size
        self._waiters: deque[threading.Event] = deque()

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            handed_over = threading.Event()
            self._waiters.append(handed_over)
        handed_over.wait()

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()  # the slot passes to the oldest waiter, never freed
            elif self._free == self._size:
                raise ValueError("FairSlots released more often than acquired")
            else:
                self._free += 1


class SharedRate(Protocol):
    """A rate shared with other processes (`shared.store.budget.SharedBudget`): what this process may
    send now, and what it sent."""

    def rate(self) -> float: ...

    def record(self, waited: float) -> None: ...


# A request scheduled further ahead wakes up this often to check whether a shared rate moved meanwhile.
_REPLAN_SECONDS = 0.25


class RateLimiter:
    """Caps requests per second (evenly paced) and requests in flight (`FairSlots`), across threads.
    With `shared`, the rate is this process's current share of a budget across processes, and a
    request waiting for its turn keeps its place in line at the new pace when the share moves."""

    def __init__(
        self,
        *,
        requests_per_second: float | None = None,
        max_concurrency: int = 8,
        shared: SharedRate | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.requests_per_second = requests_per_second
        self.max_concurrency = max_concurrency
        self.shared = shared
        self._slots = FairSlots(max_concurrency)
        self._lock = threading.Lock()
        self._next_free = time.monotonic()
        self._interval: float | None = None
        self._in_flight = 0
        self.peak_in_flight = 0

    def _current_interval(self) -> float | None:
        rate = self.shared.rate() if self.shared is not None else self.requests_per_second
        if not rate:
            return None
        interval = 1.0 / rate
        if interval != self._interval:
            with self._lock:
                now = time.monotonic()
                if self._interval is not None and self._next_free > now:
                    self._next_free = now + (self._next_free - now) * interval / self._interval
                self._interval = interval
        return interval

    def _wait_for_rate(self) -> None:
        interval = self._current_interval()
        if interval is None:
            return
        with self._lock:
            asked = time.monotonic()
            start = max(asked, self._next_free)
            self._next_free = start + interval
        now = asked
        while start > now:
            time.sleep(min(start - now, _REPLAN_SECONDS))
            now = time.monotonic()
            current = self._current_interval()
            if current is not None and current != interval and start > now:
                start = now + (start - now) * current / interval
                interval = current
        if self.shared is not None:
            self.shared.record(now - asked)

    @contextmanager
    def slot(self):
        self._slots.acquire()
        try:
            self._wait_for_rate()
            with self._lock:
                self._in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self._in_flight -= 1
        finally:
            self._slots.release()
