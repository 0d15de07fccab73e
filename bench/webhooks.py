"""Webhook senders (scenario 4), in their own OS process: many threads, each changing a contact in Dynamics
through the Web API, taking the webhook Dataverse delivers for that change and posting it to the local
functions host, as Dynamics' asynchronous service would, one change at a time per thread. With several
host processes (`--webhook-url` once per host), the threads are spread evenly over them, as Azure's front
end spreads requests over a Function App's instances.

Dataverse's deliveries arrive at a relay here (the webhook URL `d365 setup` registered), so the bodies
are the real ones (post image and all); the senders then post them to `webhook_d365` and time the round
trip. Prints its relay URL as one JSON line, waits for a line on stdin, runs, prints the results as one
JSON line: per change its start (machine-wide monotonic clock), Dataverse's delivery delay and the
handler's round trip, plus the answers' statuses and outcomes and the process's CPU seconds.

    python -m bench.webhooks --settings FILE --webhook-url URL [--webhook-url URL …] --changes FILE
        [--senders 50]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer

DELIVERY_TIMEOUT_SECONDS = 60
# Headers a forwarding sender must not copy: its own request sets them.
_HOP_HEADERS = {"host", "content-length", "connection", "accept-encoding"}


class Relay:
    """Receives Dataverse's webhook deliveries and hands each to the sender waiting for that row."""

    def __init__(self) -> None:
        self._mailboxes: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self.server = EmulatorServer(self._wsgi).start()

    def mailbox(self, row_id: str) -> queue.Queue:
        with self._lock:
            return self._mailboxes.setdefault(row_id.lower(), queue.Queue())

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        try:
            row_id = str(json.loads(body)["PrimaryEntityId"])
        except (ValueError, KeyError):
            return Response(status=400)(environ, start_response)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        self.mailbox(row_id).put((time.monotonic(), body, headers))
        return Response(status=200)(environ, start_response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--settings", required=True, type=Path)
    parser.add_argument(
        "--webhook-url", required=True, action="append", help="a host's webhook_d365 URL with its ?code="
    )
    parser.add_argument(
        "--changes", required=True, type=Path, help='JSON {"<contact id>": "<new first name>"}'
    )
    parser.add_argument("--senders", type=int, default=50)
    args = parser.parse_args(argv)
    settings = json.loads(args.settings.read_text())
    # The senders change Dynamics in parallel, as many users would.
    settings["D365_MAX_CONCURRENCY"] = str(min(args.senders, 52))
    os.environ.update(settings)
    relay = Relay()
    print(json.dumps({"relay_url": f"{relay.server.base_url}/api/webhook_d365"}), flush=True)
    sys.stdin.readline()

    from shared.app import get_app

    dataverse = get_app().dataverse
    changes: dict[str, str] = json.loads(args.changes.read_text())
    work: queue.Queue = queue.Queue()
    for item in changes.items():
        work.put(item)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def sender(url: str) -> None:
        session = requests.Session()
        session.trust_env = False
        while True:
            try:
                contact_id, name = work.get_nowait()
            except queue.Empty:
                return
            result: dict[str, Any] = {"id": contact_id}
            result["started"] = time.monotonic()
            try:
                dataverse.update("contacts", contact_id, {"firstname": name})
                delivered, body, headers = relay.mailbox(contact_id).get(timeout=DELIVERY_TIMEOUT_SECONDS)
                result["delivery_ms"] = (delivered - result["started"]) * 1000
                posted = time.monotonic()
                answer = session.post(url, data=body, headers=headers, timeout=120)
                result["handler_ms"] = (time.monotonic() - posted) * 1000
                result["status"] = answer.status_code
                result["outcome"] = (answer.json() if answer.content else {}).get("outcome")
            except Exception as exc:  # counted and reported, never silently lost
                result["status"] = type(exc).__name__
                result["error"] = str(exc)[:300]
            with lock:
                results.append(result)

    started, cpu_started = time.monotonic(), time.process_time()
    urls = args.webhook_url
    threads = [
        threading.Thread(target=sender, args=(urls[n % len(urls)],), name=f"sender-{n}")
        for n in range(args.senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    relay.server.stop()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "changes": results,
                "statuses": dict(Counter(str(r["status"]) for r in results)),
                "outcomes": dict(Counter(str(r.get("outcome")) for r in results)),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
