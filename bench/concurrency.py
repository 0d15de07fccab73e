"""Scenario 4b: concurrent, out-of-order and repeated webhook deliveries on two host processes. Dataverse
runs its asynchronous webhook jobs in parallel and out of order, sometimes twice, and on Flex Consumption
several instances receive them: each contact changes three times in quick succession, Dataverse's
emulator delivers the jobs with 16 workers and random delays (a tenth twice) through a balancer that
hands each to one of two host processes, while Campaign answers slowly. The figure is how many profiles
end different from Dynamics, with no sweep run after the deliveries."""

from __future__ import annotations

import random
import threading

import requests
from werkzeug.wrappers import Request, Response

from bench.processes import HostProcess
from bench.report import Goal
from bench.stacks import mismatches
from emulators.common import EmulatorServer

VERSIONS = 3
DELIVERY = {"webhook_workers": 16, "webhook_max_delay_seconds": 0.5, "webhook_duplicate_rate": 0.1}
CAMPAIGN_LATENCY = {"latency_ms": 40, "latency_jitter_ms": 30}
_HOP_HEADERS = {"host", "content-length", "connection", "accept-encoding"}


class Balancer:
    """Where the webhook is registered: forwards each delivery to one of the hosts, picked at random, and
    answers with that host's status (what Azure's front end does for several instances)."""

    def __init__(self, urls: list[str], seed: int) -> None:
        self._urls = urls
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._local = threading.local()
        self.server = EmulatorServer(self._wsgi).start()

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/api/webhook_d365"

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            url = self._random.choice(self._urls)
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        answer = session.post(url, data=request.get_data(), headers=headers, timeout=120)
        return Response(answer.content, status=answer.status_code)(environ, start_response)


class ConcurrentDeliveries:
    """The scenario as a part of `bench.scenarios.Bench` (which provides `o`, `stack`, `settings`, `run`,
    `figure`, `log` and `workspace`)."""

    def concurrency(self) -> None:
        o = self.o
        count = o.concurrency_contacts
        self.log(f"4b concurrent deliveries: {count:,} contacts × {VERSIONS} versions on two host processes")
        campaign = {"faults": CAMPAIGN_LATENCY}
        with self.stack("concurrency", count, dataverse=DELIVERY, campaign=campaign) as server:
            settings = self.settings(server)
            self.run("ingress", settings, server)
            with (
                HostProcess(settings, self.workspace, name="a") as first,
                HostProcess(settings, self.workspace, name="b") as second,
            ):
                balancer = Balancer([first.webhook_url, second.webhook_url], seed=o.seed)
                try:
                    self.register_webhook(settings, balancer.url, "balanced")
                    server.call("edit_versions", count=count, versions=VERSIONS, seed=43)
                    deliveries = server.call("wait_deliveries", timeout=600)
                finally:
                    balancer.server.stop()
            state = server.call("compare")
        self.figure(
            "4",
            "concurrent out-of-order deliveries: final mismatches",
            mismatches(state) if deliveries["done"] else None,
            "records",
            Goal("==", 0),
            note=f"{count:,} contacts changed {VERSIONS} times; Dataverse delivered "
            f"{deliveries['delivered']:,} jobs ({deliveries['duplicates']} twice, "
            f"{deliveries['failed']} failed) with "
            f"{DELIVERY['webhook_workers']} workers and up to {DELIVERY['webhook_max_delay_seconds']} s of "
            f"random delay each, to two host processes; Campaign latency {CAMPAIGN_LATENCY['latency_ms']} ± "
            f"{CAMPAIGN_LATENCY['latency_jitter_ms']} ms; no sweep after the deliveries"
            + (f"; e.g. {state['example']}" if state.get("example") else ""),
        )
