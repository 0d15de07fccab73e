"""Adobe I/O Events journal of one event registration (the pull API), with 7-day-style retention.

Positions are opaque strings. A `since` position is expired (410) once events newer than it were purged;
an unknown position is a 400. Link headers carry paths (as Adobe's do), not absolute URLs.
"""

from __future__ import annotations

import copy
import random
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from .clock import EmulatedClock
from .responses import json_response

DEFAULT_BATCH = 100


@dataclass
class _Entry:
    seq: int
    position: str
    published: float
    event: dict[str, Any]


class Journal:
    def __init__(
        self, *, path: str, retention_seconds: float, clock: EmulatedClock, retry_after_seconds: int = 10
    ) -> None:
        self.path = path
        self.retention_seconds = retention_seconds
        self.retry_after_seconds = retry_after_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []  # contiguous seqs, oldest first
        self._start = self._new_position()
        self._positions: dict[str, int] = {self._start: 0}
        self._last_seq = 0
        self._last_position = self._start
        self._purged_through = 0  # the highest seq removed by retention
        self.published = 0

    def publish(
        self, events: list[dict[str, Any]], *, duplicate_rate: float = 0.0, shuffle_seed: int | None = None
    ) -> list[str]:
        """Append events (deep copies; an `id` is added when missing) and answer their positions.
        `duplicate_rate`: that fraction is delivered a second time later (same id, another position), as
        at-least-once delivery does; `shuffle_seed`: publish in a shuffled order (no ordering guarantee)."""
        rng = random.Random(shuffle_seed)
        batch = [copy.deepcopy(event) for event in events]
        for event in batch:
            event.setdefault("id", str(uuid.uuid4()))
        if shuffle_seed is not None:
            rng.shuffle(batch)
        duplicates = [
            copy.deepcopy(event) for event in batch if duplicate_rate and rng.random() < duplicate_rate
        ]
        rng.shuffle(duplicates)
        now = self._clock.now()
        positions = []
        with self._lock:
            for event in batch + duplicates:
                self._last_seq += 1
                position = self._new_position()
                self._positions[position] = self._last_seq
                self._entries.append(_Entry(self._last_seq, position, now, event))
                positions.append(position)
            self._last_position = positions[-1] if positions else self._last_position
            self.published += len(positions)
        return positions

    def purge(self) -> None:
        cutoff = self._clock.now() - self.retention_seconds
        with self._lock:
            expired = 0
            while expired < len(self._entries) and self._entries[expired].published <= cutoff:
                expired += 1
            if expired:
                self._purged_through = self._entries[expired - 1].seq
                del self._entries[:expired]

    @property
    def retained(self) -> int:
        return len(self._entries)

    def handle(self, request: Request) -> Response:
        """GET <journal>?since=&limit=&latest= (authentication already checked)."""
        self.purge()
        limit_text = request.args.get("limit")
        if limit_text is not None and (not limit_text.isdigit() or int(limit_text) < 1):
            return _text(400, f"Invalid limit {limit_text}: a positive integer is expected.")
        limit = int(limit_text) if limit_text else DEFAULT_BATCH
        since = request.args.get("since")
        latest = request.args.get("latest", "").lower() == "true"
        with self._lock:
            if since is not None:
                after, current = self._positions.get(since), since
                if after is None:
                    return _text(400, f"Invalid position {since}.")
                if after < self._purged_through:
                    return _text(410, f"Events at position {since} have expired.")
            elif self._entries and not latest:
                after, current = self._entries[0].seq - 1, self._start  # from the oldest retained event
            else:
                # The end of the journal; its position stays valid after a purge (nothing newer was lost).
                after, current = self._last_seq, self._last_position
            first = self._entries[0].seq if self._entries else self._last_seq + 1
            offset = max(0, after + 1 - first)
            batch = self._entries[offset : offset + limit]
        links = [("next", self._link(since=batch[-1].position if batch else current, limit=limit_text))]
        links.append(("latest", self._link(latest=True, limit=limit_text)))
        headers = [("Link", f'<{url}>; rel="{rel}"') for rel, url in links]
        if not batch:
            headers.append(("retry-after", str(self.retry_after_seconds)))
            return Response(status=204, headers=headers)
        body = {
            "events": [{"position": e.position, "event": copy.deepcopy(e.event)} for e in batch],
            "_page": {"last": batch[-1].position, "count": len(batch)},
        }
        return json_response(body, headers=headers)

    def _link(self, *, since: str | None = None, latest: bool = False, limit: str | None = None) -> str:
        params = [f"since={quote(since, safe=':-')}"] if since is not None else []
        if latest:
            params.append("latest=true")
        if limit:
            params.append(f"limit={limit}")
        return f"{self.path}?{'&'.join(params)}"

    @staticmethod
    def _new_position() -> str:
        return f"{secrets.token_hex(3)}:{uuid.uuid4()}:{uuid.uuid4()}"


def _text(status: int, message: str) -> Response:
    return Response(message, status=status, mimetype="text/plain")
