"""Scenario 8: three host processes, a webhook burst and an initial load together, sharing one Campaign
budget (`ACS_TOTAL_REQUESTS_PER_SECOND`, `shared/store/budget.py`). As on Flex Consumption after a
Dynamics bulk edit: the webhook has scaled out to three instances while the `contacts_sync` timer's
initial load runs (a `bench.worker` process: the same `App.contacts_sync` a host's timer calls). The load
alone would use the whole licence; the burst's deliveries (Dataverse's emulator, many workers, through a
balancer that hands each to one of the hosts) want more on top. The figures: Campaign's total rate
against R, its 429s, the share of R used together, and the changes lost (a final `contacts_sync` run,
the next timer tick, then the record-by-record oracle).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from bench.concurrency import Balancer
from bench.processes import HostProcess, ProcessError
from bench.report import Goal
from bench.stacks import mismatches

HOSTS = 3
# A bulk edit's webhook jobs: Dataverse's asynchronous service delivers many at once.
BURST_DELIVERY = {"webhook_workers": 48, "webhook_max_delay_seconds": 0.0, "webhook_duplicate_rate": 0.0}
DELIVERY_TIMEOUT_SECONDS = 1200


class CampaignRate:
    """Samples the emulator's Campaign counters (admitted and refused requests) every half second."""

    def __init__(self, server) -> None:
        self._server = server
        self.samples: list[tuple[float, int, int]] = []
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while self._running.is_set():
            campaign = self._server.call("stats")["campaign"]
            self.samples.append((time.monotonic(), campaign["requests"], campaign["rejected"]["requests"]))
            time.sleep(0.5)

    def stop(self) -> None:
        self._running.clear()
        self._thread.join()

    def between(self, start: float, end: float) -> dict[str, float]:
        inside = [s for s in self.samples if start <= s[0] <= end]
        (t0, admitted0, refused0), (t1, admitted1, refused1) = inside[0], inside[-1]
        seconds = t1 - t0
        admitted, refused = admitted1 - admitted0, refused1 - refused0
        peak = 0
        for i, (ta, aa, ra) in enumerate(inside):  # the busiest 1 s (two samples) of attempts
            later = [(a + r) for t, a, r in inside[i:] if t - ta <= 1.01]
            peak = max(peak, later[-1] - (aa + ra))
        return {
            "seconds": seconds,
            "admitted_per_second": admitted / seconds,
            "attempted_per_second": (admitted + refused) / seconds,
            "refused_share": refused / max(admitted + refused, 1),
            "refused": refused,
            "admitted": admitted,
            "peak_attempts_in_a_second": peak,
        }


class ScaleOut:
    """The scenario as a part of `bench.scenarios.Bench` (which provides `o`, `stack`, `settings`, `run`,
    `figure`, `log` and `workspace`)."""

    def scaleout(self) -> None:
        o = self.o
        contacts, burst = o.scaleout_contacts, o.scaleout_webhooks
        self.log(
            f"8 scale-out: {HOSTS} host processes, initial load of {contacts:,} contacts + a burst of "
            f"{burst:,} webhooks, one Campaign budget of {o.client_rate(o.rate)}/s"
        )
        with self.stack("scaleout", contacts, dataverse=BURST_DELIVERY) as server:
            settings = self.settings(
                server, ACS_TOTAL_REQUESTS_PER_SECOND=o.client_rate(o.rate), MAXIMUM_INSTANCE_COUNT=HOSTS
            )
            hosts = [HostProcess(settings, self.workspace, name=f"scale-{n}") for n in range(HOSTS)]
            balancer = Balancer([host.webhook_url for host in hosts], seed=o.seed)
            try:
                self.register_webhook(settings, balancer.url, "balanced")
                rate = CampaignRate(server)
                load: dict[str, Any] = {}
                loader = threading.Thread(target=lambda: load.update(self.run("ingress", settings, server)))
                try:
                    started = time.monotonic()
                    loader.start()
                    time.sleep(5)  # the load is under way, at the whole budget
                    server.call("edit_contacts", count=burst, mapped=True, seed=71)
                    deliveries = self._wait_for_deliveries(server, burst, time.monotonic())
                    burst_done = time.monotonic()
                    loader.join()
                    load_done = started + load.get("seconds", 0)
                finally:
                    rate.stop()
            finally:
                balancer.server.stop()
                for host in hosts:
                    host.stop()
            # Every change is in Dynamics now; the next timer tick settles what a webhook left for it.
            final = self.run("ingress", settings, server)
            state = server.call("compare")
        self._figures(rate.between(started + 5, min(burst_done, load_done)), deliveries, final, state)

    @staticmethod
    def _wait_for_deliveries(server, count: int, since: float) -> dict[str, Any]:
        """Polled (not `wait_deliveries`, which holds the emulator's command pipe) so the rate is sampled."""
        while time.monotonic() - since < DELIVERY_TIMEOUT_SECONDS:
            webhooks = server.call("stats")["dataverse"]["webhooks"]
            if webhooks["pending"] == 0 and webhooks["delivered"] + webhooks["failed"] >= count:
                return webhooks
            time.sleep(1)
        raise ProcessError(f"Dataverse left webhook jobs undelivered after {DELIVERY_TIMEOUT_SECONDS} s")

    def _figures(
        self, busy: dict[str, float], deliveries: dict[str, Any], final: dict[str, Any], state: dict[str, Any]
    ) -> None:
        o = self.o
        lost = mismatches(state)
        window = (
            f"over the {busy['seconds']:.0f} s the load and the burst ran together, with "
            f"ACS_TOTAL_REQUESTS_PER_SECOND = {o.client_rate(o.rate)} shared by {HOSTS} host processes"
        )
        self.figure(
            "8",
            "3 hosts, burst + load: Campaign's total rate ÷ R",
            round(busy["attempted_per_second"] / o.rate, 3),
            "",
            Goal("<=", 1.0),
            note=f"{busy['attempted_per_second']:.0f} requests/s sent (admitted and refused) {window}; the "
            f"busiest second {busy['peak_attempts_in_a_second']:.0f}",
        )
        self.figure(
            "8",
            "3 hosts, burst + load: 429s",
            round(busy["refused_share"] * 100, 2),
            "% of calls",
            Goal("<", 1.0),
            note=f"{busy['refused']:.0f} refused of {busy['admitted'] + busy['refused']:.0f}",
        )
        self.figure(
            "8",
            "3 hosts, burst + load: share of R used",
            round(busy["admitted_per_second"] / o.rate, 3),
            "",
            Goal(">=", 0.9),
            note=f"{busy['admitted_per_second']:.0f} Campaign calls/s answered",
        )
        self.figure(
            "8",
            "3 hosts, burst + load: changes lost",
            lost,
            "records",
            Goal("==", 0),
            note=f"Dataverse delivered {deliveries['delivered']:,} webhook jobs "
            f"({deliveries['failed']} failed) to {HOSTS} hosts; then one contacts_sync run (the next timer "
            f"tick): {json.dumps(final['report']['counts'])}"
            + (f"; e.g. {state['example']}" if state.get("example") else ""),
        )
