"""How long a change takes to reach the other system: waiting for changes to arrive, and their latencies."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from emulators.demo_console import Console

# A change awaited on the other side: when it was made, and a check that it has arrived.
Pending = dict[str, tuple[float, Callable[[], bool]]]


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def await_arrivals(pending: Pending, label: str, console: Console) -> list[float]:
    """Polls every pending change for up to 60 s, with a progress bar; the milliseconds each one took to
    arrive. Arrived changes are taken out of `pending`."""
    latencies: list[float] = []
    total = len(pending)
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for key, (started, arrived) in list(pending.items()):
            if arrived():
                latencies.append((time.monotonic() - started) * 1000)
                del pending[key]
        console.progress(label, total - len(pending), total)
        time.sleep(0.05)
    console.end_progress()
    return latencies


def latency_summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50_ms": round(percentile(values, 50), 0) if values else None,
        "p95_ms": round(percentile(values, 95), 0) if values else None,
        "mean_ms": round(statistics.fmean(values), 0) if values else None,
    }
