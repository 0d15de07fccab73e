"""The two small stacks: "small" (scenario 2's load, then 6's first opt-out run after a load) and
"baseline" (the naive baseline B, then 6's Campaign opt-outs on the same stack). Scenario 2's figures
need the main stack's too: `bench.scenarios.Bench.comparisons` makes them."""

from __future__ import annotations

import json

from bench.options import DEFAULT_OPTOUT_PERIOD_SECONDS
from bench.processes import ServerProcess
from bench.report import Goal


class SmallStacks:
    """The scenarios as a part of `bench.scenarios.Bench` (which provides `o`, `stack`, `settings`, `run`,
    `records`, `figure`, `facts` and `log`)."""

    def small_stack(self) -> None:
        o = self.o
        with self.stack("small", o.small_contacts) as server:
            settings = self.settings(server)
            self.log(f"2 memory: initial load of {o.small_contacts:,} contacts")
            self.facts["small_rss_kib"] = self.run("ingress", settings, server)["peak_rss_kib"]
            self.first_optout_run(server, settings)

    def baseline_and_optout(self) -> None:
        o = self.o
        self.log(
            f"naive baseline: {o.baseline_contacts:,} contacts, one call at a time, look-up before each write"
        )
        with self.stack(
            "baseline", o.baseline_contacts, campaign={"max_concurrency": 1}, campaign_profiles=1
        ) as server:
            settings = self.settings(server, ACS_MAX_CONCURRENCY=1)
            result = self.run("ingress", settings, server, "--workers", "1")
            records = self.records(result)
            naive = records / result["seconds"]
            calls = result["stats"]["campaign"]["engine_calls"]
            self.figure(
                "B",
                "naive baseline: records/s",
                round(naive, 1),
                "records/s",
                note=f"{records:,} records; Campaign calls per record "
                f"{calls['total'] / max(records, 1):.2f} ({calls['read']:,} look-ups, "
                f"{calls['insert']:,} creates)",
            )
            self.facts["naive_records_per_second"] = naive
            # Same state (ledger, checkpoints) as the load; the sync process's usual Campaign concurrency.
            self.optout(server, {**settings, "ACS_MAX_CONCURRENCY": str(o.campaign_concurrency)})

    def optout(self, server: ServerProcess, settings: dict[str, str]) -> None:
        o = self.o
        self.log("6 opt-out: the first run after the load, then Campaign opt-outs and one on-demand run")
        self.run("optout", settings, server)  # reads back the profiles the load wrote
        chosen = server.call("campaign_optouts", count=o.optout_changes, seed=61)
        result = self.run("optout", settings, server)
        arrived = server.call("optouts_in_dynamics", contact_ids=chosen)
        processing = result["seconds"]
        period = DEFAULT_OPTOUT_PERIOD_SECONDS
        self.figure(
            "6",
            f"opt-out: on-demand run for {o.optout_changes} Campaign opt-outs",
            round(processing, 2),
            "s",
            note=f"{arrived}/{len(chosen)} reached Dynamics; {json.dumps(result['report']['counts'])}",
        )
        self.figure(
            "6",
            "opt-out: expected Campaign → Dynamics delay (default schedule)",
            round(period / 2 + processing, 1),
            "s",
            note="computed, not waited for: a change waits for the next tick of the "
            f"every-{period // 60}-minute timer, {period / 2:.0f} s on average, then the run's "
            f"{processing:.1f} s",
        )
        self.figure(
            "6",
            "opt-out: worst-case delay (default schedule)",
            round(period + processing, 1),
            "s",
            note="Adobe's integration moves opt-outs once a day",
        )

    def first_optout_run(self, server: ServerProcess, settings: dict[str, str]) -> None:
        """The first opt-out run after an initial load reads back every profile the load created (each
        changed after the load began); on the small stack, so that its per-profile cost is not its
        start-up's."""
        o = self.o
        self.log(f"6 opt-out: the first run after the load of {o.small_contacts:,} contacts")
        first = self.run("optout", settings, server)
        counts = first["report"]["counts"]
        read = sum(counts.get(k, 0) for k in ("unchanged_since_load", "unchanged", "dynamics_updated"))
        per_profile = first["seconds"] / max(read, 1) * 1000
        self.figure(
            "6",
            "opt-out: first run after an initial load, per loaded profile",
            round(per_profile, 3) if read else None,
            "ms",
            Goal("<=", 0.5),
            note=f"{read:,} profiles read back in {first['seconds']:.1f} s, "
            f"{counts.get('unchanged_since_load', 0):,} of them unmodified since the load created them (no "
            f"ledger read): ≈ {per_profile * o.contacts / 1000:.0f} s for {o.contacts:,} contacts; "
            f"{json.dumps(counts)}",
        )
