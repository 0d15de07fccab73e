"""The emulator's clock: wall time plus an offset that tests move forward (token expiry, journal
retention), rendered the way Campaign renders timestamps."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def campaign_timestamp(epoch: float) -> str:
    """Campaign's rendering of a timestamp: `2026-11-22 10:00:00.000Z` (UTC, milliseconds).
    Fixed width, so these strings sort in time order."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_timestamp(epoch: float) -> str:
    """ISO 8601 with `T` and milliseconds, as event payloads carry it."""
    return campaign_timestamp(epoch).replace(" ", "T")


def parse_timestamp(text: str) -> float:
    """Accept Campaign's rendering, ISO 8601 (`T`, `Z` or an offset) or a bare date; answer epoch seconds."""
    value = text.strip().replace(" ", "T", 1)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class EmulatedClock:
    """Never goes backwards, so `lastModified` follows the order of writes (ties are possible)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._last = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            self._last = max(time.time() + self._offset, self._last)
            return self._last

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds
