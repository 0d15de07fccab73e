"""Scenario 7 on its own stack ("resilience"): an initial load with faults injected on both APIs, run
by timer runs until it succeeds; its figures are about correctness and the calls spent on retries."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.report import Goal
from bench.stacks import dataverse_attempts, diff


def _campaign_attempts(stats: dict[str, Any]) -> int:
    """Every Campaign request that reached the emulator, answered or not."""
    c = stats["campaign"]
    return c["requests"] + sum(c["faults"].values()) + sum(c["rejected"].values())


class Resilience:
    """The scenario as a part of `bench.scenarios.Bench` (which provides `o`, `stack`, `settings`, `run`,
    `figure`, `facts` and `log`)."""

    def resilience(self) -> None:
        o = self.o
        faults = {"error_rate": 0.10, "throttle_rate": 0.05, "drop_rate": 0.01, "latency_ms": o.latency_ms}
        self.log(f"7 resilience: initial load of {o.resilience_contacts:,} contacts with faults on both APIs")
        with self.stack(
            "resilience",
            o.resilience_contacts,
            campaign={"requests_per_second": o.resilience_rate, "faults": {**faults, "seed": 7}},
            dataverse={"faults": {**faults, "latency_ms": 0, "seed": 8}},
        ) as server:
            settings = self.settings(server, ACS_REQUESTS_PER_SECOND=o.client_rate(o.resilience_rate))
            before = server.call("stats")
            started = time.monotonic()
            runs, failed = 0, 0
            for runs in range(1, 9):
                result = self.run("ingress", settings, server)
                failed = result["report"]["counts"].get("failed", 0)
                if not failed and result["report"]["outcome"] == "succeeded":
                    break
                # Failed records are retried by the next timer run once their backoff (1 s, doubling) passed.
                time.sleep(min(2 ** (runs - 1), 8))
            seconds = time.monotonic() - started
            stats = diff(server.call("stats"), before)
            state = server.call("compare")
        needed = o.resilience_contacts + 1  # one create per record and the 'is Campaign empty?' probe
        attempts = _campaign_attempts(stats)
        self.figure(
            "7",
            "resilience: final-state mismatches",
            state["missing"] + state["extra"] + state["differing"],
            "records",
            Goal("==", 0),
            note=f"{state['contacts']:,} contacts, {state['profiles']:,} profiles; {runs} timer run(s) in "
            f"{seconds:.0f} s" + (f", {failed} records still failing" if failed else ""),
        )
        self.figure("7", "resilience: duplicate profiles", state["duplicates"], "records", Goal("==", 0))
        self.figure(
            "7",
            "resilience: extra Campaign calls spent on retries",
            attempts - needed,
            "calls",
            note=f"{(attempts - needed) / needed:.1%} over the {needed:,} calls a fault-free load needs; "
            f"injected {json.dumps(stats['campaign']['faults'])}, engine calls "
            f"{json.dumps(stats['campaign']['engine_calls'])}",
        )
        self.facts["resilience_dataverse_requests"] = dataverse_attempts(stats)
        self.facts["resilience_dataverse_faults"] = json.dumps(stats["dataverse"]["faults"])
