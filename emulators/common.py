"""Pieces both emulators share: a threaded WSGI server on a free loopback port, seeded fault
injection (latency, 5xx, 429, dropped connections) and a server-side request/concurrency limit."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from werkzeug.wrappers import Request, Response

from emulators.httpserver import DROPPED, KeepAliveWSGIServer


class EmulatorServer:
    """Serves a WSGI app on 127.0.0.1 (port 0 = a free one) from a background thread."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, ssl_context=None) -> None:
        self._server = KeepAliveWSGIServer(host, port, app, ssl_context=ssl_context)
        scheme = "https" if ssl_context is not None else "http"
        self.host = host
        self.port = self._server.server_port
        self.base_url = f"{scheme}://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class FaultConfig:
    """Seeded, reproducible misbehaviour. Rates are fractions of requests (0..1)."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0  # answered 503 before any processing
    throttle_rate: float = 0.0  # answered 429 + Retry-After before any processing
    drop_rate: float = 0.0  # connection closed without an answer, before any processing
    retry_after_seconds: float = 1.0
    seed: int = 0


class FaultInjector:
    """Decides, per request, whether to misbehave; thread-safe and deterministic for a given seed."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.configure(config or FaultConfig())
        self.counts = {"error": 0, "throttle": 0, "drop": 0}

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)
        self._lock = threading.Lock()

    def next_fault(self) -> tuple[str | None, float]:
        """Return (fault or None, latency seconds) for the next request."""
        c = self.config
        with self._lock:
            roll = self._random.random()
            jitter = (
                self._random.uniform(-c.latency_jitter_ms, c.latency_jitter_ms) if c.latency_jitter_ms else 0
            )
        latency = max(0.0, (c.latency_ms + jitter) / 1000.0)
        fault = None
        if roll < c.drop_rate:
            fault = "drop"
        elif roll < c.drop_rate + c.error_rate:
            fault = "error"
        elif roll < c.drop_rate + c.error_rate + c.throttle_rate:
            fault = "throttle"
        if fault:
            with self._lock:
                self.counts[fault] += 1
        return fault, latency


def drop_connection(environ) -> Response:
    """Close the client's socket without answering, as a crashed front end would."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    environ[DROPPED] = True  # the server sends nothing back
    return Response(status=500)


class ServerLimit:
    """A service-protection limit: at most `max_requests` per sliding `window_seconds` and at most
    `max_concurrency` requests in flight. `admit` answers None or the Retry-After seconds + reason."""

    def __init__(
        self,
        *,
        max_requests: int | None = None,
        window_seconds: float = 300.0,
        max_concurrency: int | None = None,
    ) -> None:
        self.max_requests = max_requests
        self.window_seconds = window_seconds
        self.max_concurrency = max_concurrency
        self._times: deque[float] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.peak_in_flight = 0
        self.rejected = {"requests": 0, "concurrency": 0}

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_seconds:
            self._times.popleft()

    def remaining_requests(self) -> int | None:
        """Requests left in the current window (None when unlimited), for informational headers."""
        if self.max_requests is None:
            return None
        with self._lock:
            self._expire(time.monotonic())
            return max(0, self.max_requests - len(self._times))

    def charge(self, count: int) -> None:
        """Count work done inside an already admitted request (a batch's inner requests) toward the
        window without rejecting it: the next requests pay for it."""
        if self.max_requests is None or count <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self._times.extend([now] * count)

    @contextmanager
    def admit(self):
        """Yields None when admitted (the slot is held for the block), else (retry_after, reason)."""
        now = time.monotonic()
        with self._lock:
            if self.max_concurrency is not None and self._in_flight >= self.max_concurrency:
                self.rejected["concurrency"] += 1
                verdict = (1.0, "concurrency")
            else:
                verdict = None
                if self.max_requests is not None:
                    self._expire(now)
                    if len(self._times) >= self.max_requests:
                        self.rejected["requests"] += 1
                        verdict = (max(0.05, self._times[0] + self.window_seconds - now), "requests")
                    else:
                        self._times.append(now)
            if verdict is None:
                self._in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            yield verdict
        finally:
            if verdict is None:
                with self._lock:
                    self._in_flight -= 1


def guarded(
    app_handler: Callable[[Request], Response],
    *,
    faults: FaultInjector,
    limit: ServerLimit,
    throttled: Callable[[float, str], Response],
    unavailable: Callable[[], Response],
    exempt: Callable[[Request], bool] = lambda request: False,
):
    """Wrap a request handler (Request -> Response) into a WSGI app with faults and limits applied
    before the handler runs, so a faulted request never changes state."""

    def wsgi(environ, start_response):
        request = Request(environ)
        if not exempt(request):
            fault, latency = faults.next_fault()
            if latency:
                time.sleep(latency)
            if fault == "drop":
                return drop_connection(environ)(environ, start_response)
            if fault == "error":
                return unavailable()(environ, start_response)
            if fault == "throttle":
                return throttled(faults.config.retry_after_seconds, "requests")(environ, start_response)
            with limit.admit() as verdict:
                if verdict is not None:
                    return throttled(*verdict)(environ, start_response)
                response = app_handler(request)
                return response(environ, start_response)
        return app_handler(request)(environ, start_response)

    return wsgi
