"""An Application Insights ingestion endpoint on a loopback port that keeps what it is sent, for tests.

The Azure Monitor exporter posts batches of envelopes to `<IngestionEndpoint>/v2.1/track` (older
exporters `/v2/track`), gzip-compressed or not, as a JSON array or one envelope per line; Breeze answers
200 with `itemsReceived`, `itemsAccepted` and `errors`. Live metrics (`/QuickPulseService.svc/...`) are
answered 200 and not kept. `connection_string` points an app at this server; `raw` holds every byte
received, for checks that no secret went out. Dev/test only.
"""

from __future__ import annotations

import gzip
import json
import threading
from typing import Any

from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer

TRACK_PATHS = ("/v2.1/track", "/v2/track")
LIVE_METRICS_PATH = "/QuickPulseService.svc"
INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"


def parse_envelopes(body: bytes) -> list[dict[str, Any]]:
    """A JSON array of envelopes, or newline-delimited envelopes."""
    text = body.decode("utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class IngestionCapture:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.envelopes: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._server = EmulatorServer(self._app)
        self.base_url = self._server.base_url

    @property
    def connection_string(self) -> str:
        return (
            f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={self.base_url}/;"
            f"LiveEndpoint={self.base_url}/"
        )

    @Request.application
    def _app(self, request: Request) -> Response:
        body = request.get_data()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        if request.path not in TRACK_PATHS and not request.path.startswith(LIVE_METRICS_PATH):
            return Response(status=404)
        with self._lock:
            self.raw.append(request.full_path.encode() + b"\n" + str(request.headers).encode() + body)
        if request.path not in TRACK_PATHS:
            return Response(status=200)  # live metrics pings and posts
        try:
            envelopes = parse_envelopes(body)
        except (ValueError, UnicodeDecodeError) as exc:
            error = json.dumps({"error": f"unreadable batch: {exc}"})
            return Response(error, 400, mimetype="application/json")
        with self._lock:
            self.envelopes.extend(envelopes)
        answer = {"itemsReceived": len(envelopes), "itemsAccepted": len(envelopes), "errors": []}
        return Response(json.dumps(answer), 200, mimetype="application/json")

    def of_type(self, base_type: str) -> list[dict[str, Any]]:
        """Envelopes whose data is of `base_type`: MessageData, MetricData, RemoteDependencyData, ..."""
        with self._lock:
            return [e for e in self.envelopes if e.get("data", {}).get("baseType") == base_type]

    def start(self) -> IngestionCapture:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> IngestionCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
