"""The seven scenarios of the benchmark and the naive baseline, each as figures (see `report.Figure`).

Every load is a `bench.worker` process (the sync process) against a `bench.server` process (the
emulators), with state in the driver's Azurite. Each stack is fresh, so each load starts from an empty
Campaign and an empty ledger, as a real first load does.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.concurrency import ConcurrentDeliveries
from bench.processes import (
    HostProcess,
    SendersProcess,
    ServerProcess,
    Workspace,
    adopt,
    cpu_seconds,
    run_worker,
)
from bench.report import Figure, Goal
from bench.scaleout import ScaleOut
from emulators.azurite import Azurite
from emulators.demo import percentile

MIB = 1024
WORKER_TIMEOUT = 1800
# Adobe's schedule for opt-outs is daily; ours is the app setting's default.
DEFAULT_OPTOUT_PERIOD_SECONDS = 300


@dataclass
class Options:
    contacts: int = 100_000
    small_contacts: int = 10_000
    rate: int = 200  # R: Campaign requests per second (emulator limit, and the client's setting)
    latency_ms: float = 20.0
    # The sync process paces a little under the licence, as docs/operations.md advises: network jitter
    # bunches evenly paced requests, and each one over the limit costs a whole 1 s Retry-After.
    client_rate_fraction: float = 0.98
    campaign_concurrency: int = 16  # ACS_MAX_CONCURRENCY of the sync process
    page_size: int = 5000
    changed_percent: float = 1.0
    webhooks: int = 5000
    senders: int = 50
    concurrency_contacts: int = 1000
    scaleout_contacts: int = 8000
    scaleout_webhooks: int = 1000
    events: int = 50_000
    events_contacts: int = 5000
    protection_requests: int = 6000
    protection_window_seconds: float = 300.0
    protection_factor: float = 10.0
    optout_changes: int = 100
    resilience_contacts: int = 100_000
    # Its figures are about correctness: a higher limit lets it finish beside lane "main" (see README).
    resilience_rate: int = 400
    baseline_contacts: int = 300
    seed: int = 2026

    def client_rate(self, limit: int) -> int:
        return int(limit * self.client_rate_fraction)

    @property
    def protection_window(self) -> float:
        return self.protection_window_seconds / self.protection_factor

    @property
    def protection_rate(self) -> float:
        return self.protection_requests / self.protection_window

    def lines(self) -> list[str]:
        o = self
        return [
            f"Campaign emulator: R = {o.rate} requests/s (sliding 1 s window), {o.latency_ms:g} ms latency "
            f"per call; sync process: ACS_REQUESTS_PER_SECOND = {o.client_rate(o.rate)}, "
            f"ACS_MAX_CONCURRENCY = {o.campaign_concurrency} (ingress pool {2 * o.campaign_concurrency}), "
            f"D365_PAGE_SIZE = {o.page_size}, shipped sync_config.json (11 fields, 4 opt-out pairs, two-way)",
            "Otherwise the local stack's settings: Azurite in memory, D365_REQUESTS_PER_SECOND 1000, HTTP "
            "retry backoff 0.02 s doubling to 0.5 s (production: 0.5 s to 30 s; Retry-After always wins), "
            "failed records retried after 1 s doubling; FUNCTION_TIME_BUDGET_SECONDS 3600 so that one run "
            "carries a whole load",
            f"1 initial load: {o.contacts:,} contacts{_scaled(o.contacts, 100_000)}; "
            f"2 memory: {o.small_contacts:,} vs {o.contacts:,} contacts; "
            f"3 steady state: {o.changed_percent:g}% changed + {o.changed_percent:g}% touched in unmapped "
            "columns",
            f"4 webhooks: {o.webhooks:,}{_scaled(o.webhooks, 5000)} through the local functions host from "
            f"{o.senders} concurrent senders, on the {o.contacts:,}-contact stack after 1 and 3; "
            f"concurrent out-of-order deliveries: {o.concurrency_contacts:,} contacts × 3 versions, two "
            "host processes",
            f"5 events: {o.events:,}{_scaled(o.events, 50_000)} about "
            f"{o.events_contacts:,} contacts with their Campaign profiles; Dataverse service "
            f"protection {o.protection_requests:,} requests / {o.protection_window:g} s (6,000 / 300 s "
            f"scaled down ×{o.protection_factor:g} in time = {o.protection_rate:,.0f} requests/s)",
            f"6 opt-out: {o.optout_changes} Campaign opt-outs, default schedule every "
            f"{DEFAULT_OPTOUT_PERIOD_SECONDS // 60} min",
            f"7 resilience: {o.resilience_contacts:,} contacts{_scaled(o.resilience_contacts, 100_000)}, "
            f"10% 503, 5% 429, 1% dropped connections on both APIs, Campaign limit {o.resilience_rate} "
            f"requests/s (sync process {o.client_rate(o.resilience_rate)})",
            f"naive baseline: {o.baseline_contacts:,} contacts, one Campaign call at a time, look-up before "
            "every write",
            f"8 scale-out: 3 host processes taking a burst of {o.scaleout_webhooks:,} webhooks while an "
            f"initial load of {o.scaleout_contacts:,} contacts runs; ACS_TOTAL_REQUESTS_PER_SECOND = "
            f"{o.client_rate(o.rate)} shared through Table Storage",
        ]


def _scaled(size: int, issue: int) -> str:
    return "" if size == issue else f" (issue: {issue:,} → factor {issue / size:g})"


def _diff(after: Any, before: Any) -> Any:
    if isinstance(after, dict):
        return {k: _diff(v, before.get(k, 0) if isinstance(before, dict) else 0) for k, v in after.items()}
    return after - before


def _mismatches(state: dict[str, Any]) -> int:
    return state["missing"] + state["extra"] + state["differing"] + state["duplicates"]


def _campaign_attempts(stats: dict[str, Any]) -> int:
    """Every Campaign request that reached the emulator, answered or not."""
    c = stats["campaign"]
    return c["requests"] + sum(c["faults"].values()) + sum(c["rejected"].values())


def _dataverse_attempts(stats: dict[str, Any]) -> int:
    d = stats["dataverse"]
    return d["requests"] + sum(d["faults"].values()) + sum(d["rejected"].values())


class Bench(ConcurrentDeliveries, ScaleOut):
    """One lane of the benchmark: its stacks run one after the other. Lanes run side by side and share
    `figures` and `facts`; `comparisons` derives the figures that need more than one lane."""

    def __init__(
        self,
        options: Options,
        workspace: Workspace,
        *,
        log: Callable[[str], None],
        figures: list[Figure] | None = None,
        facts: dict[str, Any] | None = None,
    ) -> None:
        self.o = options
        self.workspace = workspace
        self.log = log
        self.figures: list[Figure] = [] if figures is None else figures
        self.facts: dict[str, Any] = {} if facts is None else facts
        self._azurite_pid = 0

    # -- plumbing ---------------------------------------------------------------------------------------

    def figure(self, *args: Any, **kwargs: Any) -> Figure:
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        return figure

    @contextmanager
    def stack(self, name: str, contacts: int, **options: Any) -> Iterator[ServerProcess]:
        """A fresh Azurite and emulator process: every stack starts from empty state, as a first load does."""
        self.log(f"starting Azurite and the emulators with {contacts:,} contacts ({name})")
        campaign = {"requests_per_second": self.o.rate, "faults": {"latency_ms": self.o.latency_ms}}
        campaign.update(options.pop("campaign", {}))
        with Azurite() as azurite:
            # The node process itself (Azurite() starts it directly): its CPU is part of the figures' story.
            self._azurite_pid = azurite._process.pid
            adopt(self._azurite_pid)
            server_options = {
                "contacts": contacts,
                "seed": self.o.seed,
                "azurite_ports": azurite.ports,
                "campaign": campaign,
                **options,
            }
            with ServerProcess(name, server_options, self.workspace) as server:
                yield server

    def settings(self, server: ServerProcess, **overrides: Any) -> dict[str, str]:
        o = self.o
        values = {
            "ACS_REQUESTS_PER_SECOND": o.client_rate(o.rate),
            "ACS_MAX_CONCURRENCY": o.campaign_concurrency,
            "D365_PAGE_SIZE": o.page_size,
            # One run carries a whole load here, to time it end to end; deployed, a load longer than the
            # budget goes on at the next timer tick from its checkpoint.
            "FUNCTION_TIME_BUDGET_SECONDS": 3600,
            "LOG_LEVEL": "WARNING",
            **overrides,
        }
        return server.call("settings", overrides={k: str(v) for k, v in values.items()})

    def run(self, flow: str, settings: dict[str, str], server: ServerProcess, *extra: str) -> dict[str, Any]:
        pids = {"emulators": server.process.pid, "Azurite": self._azurite_pid}
        before, cpu = server.call("stats"), {name: cpu_seconds(pid) for name, pid in pids.items()}
        result = run_worker(flow, settings, self.workspace, timeout=WORKER_TIMEOUT, extra=list(extra))
        result["stats"] = _diff(server.call("stats"), before)
        result["other_cpu_seconds"] = {name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
        result["load_average"] = os.getloadavg()[0]
        counts = result.get("report", {}).get("counts", {})
        self.log(f"  {flow} run: {result.get('seconds', 0):.1f} s, {json.dumps(counts)}")
        return result

    @staticmethod
    def records(result: dict[str, Any]) -> int:
        counts = result["report"]["counts"]
        return sum(counts.get(k, 0) for k in ("created", "updated", "unchanged"))

    # -- 1 and 3 on a stack of the full size -----------------------------------------------------------

    def main_stack(self) -> None:
        with self.stack("main", self.o.contacts) as server:
            settings = self.settings(server)
            self.initial_load(server, settings)
            self.steady_state(server, settings)
            self.webhooks(server, settings)

    def initial_load(self, server: ServerProcess, settings: dict[str, str]) -> None:
        o = self.o
        self.log(f"1 initial load of {o.contacts:,} contacts at R = {o.rate}/s")
        result = self.run("ingress", settings, server)
        records = self.records(result)
        per_second = records / result["seconds"]
        self.facts["records_per_second"] = per_second
        calls = result["stats"]["campaign"]["engine_calls"]
        state = server.call("compare")
        rejected = result["stats"]["campaign"]["rejected"]["requests"]
        ratio = per_second / o.rate
        cpu = {"sync process": result["cpu_seconds"], **result["other_cpu_seconds"]}
        cpu_text = ", ".join(f"{name} {seconds / records * 1000:.1f} ms" for name, seconds in cpu.items())
        busy = sum(cpu.values()) / result["seconds"]
        self.figure(
            "1",
            "initial load: records/s",
            round(per_second, 1),
            "records/s",
            note=f"{records:,} records in {result['seconds']:.0f} s; CPU per record: {cpu_text} "
            f"({busy:.2f} of the 2 cores busy with the benchmark's processes)",
        )
        self.figure(
            "1",
            "initial load: ratio to R",
            round(ratio, 3),
            "",
            Goal(">=", 0.97),
            note=f"{rejected} requests refused 429 by the emulator's 1 s window (the client paces at "
            f"{o.client_rate(o.rate)}/s) and retried after Retry-After (1 s); {busy:.2f} of 2 cores busy "
            f"with the benchmark's processes, load average {result['load_average']:.2f} at the end",
        )
        self.figure(
            "1", "initial load: peak RSS of the sync process", round(result["peak_rss_kib"] / MIB), "MiB"
        )
        self.figure(
            "1",
            "initial load: Campaign API calls per record",
            round(calls["total"] / max(records, 1), 4),
            "calls",
            note=f"{calls['insert']:,} creates, {calls['read']} reads (the 'is Campaign empty?' probe); "
            "API calls: the emulator counts a PATCH as 1, Adobe's licence metric counts an update as 2 "
            "engine calls (read + write)",
        )
        self.figure("1", "initial load: final-state mismatches", _mismatches(state), "records", Goal("==", 0))
        self.facts["main_rss_kib"] = result["peak_rss_kib"]
        self.facts["fault_free_dataverse_requests"] = _dataverse_attempts(result["stats"])

    def steady_state(self, server: ServerProcess, settings: dict[str, str]) -> None:
        o = self.o
        count = max(1, round(o.contacts * o.changed_percent / 100))
        self.log(f"3 steady state: {count:,} contacts touched in unmapped columns, then {count:,} changed")
        server.call("edit_contacts", count=count, mapped=False, seed=31)
        touched = self.run("ingress", settings, server)
        server.call("edit_contacts", count=count, mapped=True, seed=32)
        changed = self.run("ingress", settings, server)
        per_changed = changed["stats"]["campaign"]["engine_calls"]["total"] / count
        self.figure(
            "3",
            "steady state: Campaign calls per changed record",
            round(per_changed, 3),
            "calls",
            Goal("<=", 1.05, "Adobe's is 2"),
            note=f"{count:,} contacts changed in a mapped column, one delta run: "
            f"{json.dumps(changed['stats']['campaign']['engine_calls'])}; API calls (a PATCH counts 1)",
        )
        self.figure(
            "3",
            "steady state: Campaign calls for unchanged records",
            touched["stats"]["campaign"]["engine_calls"]["total"],
            "calls",
            Goal("==", 0),
            note=f"{count:,} contacts changed only in unmapped columns: in change tracking, same content "
            "hash",
        )

    # -- 2 on a stack of the small size -----------------------------------------------------------------

    def small_stack(self) -> None:
        o = self.o
        with self.stack("small", o.small_contacts) as server:
            settings = self.settings(server)
            self.log(f"2 memory: initial load of {o.small_contacts:,} contacts")
            self.facts["small_rss_kib"] = self.run("ingress", settings, server)["peak_rss_kib"]
            self.first_optout_run(server, settings)

    # -- figures from more than one lane ---------------------------------------------------------------

    def comparisons(self) -> None:
        o, facts = self.o, self.facts
        small, large = facts.get("small_rss_kib"), facts.get("main_rss_kib")
        if small and large:
            self.figure("2", f"peak RSS at {o.small_contacts:,} contacts", round(small / MIB), "MiB")
            self.figure("2", f"peak RSS at {o.contacts:,} contacts", round(large / MIB), "MiB")
            self.figure(
                "2",
                "peak RSS growth",
                round((large - small) / small * 100, 1),
                "%",
                Goal("<=", 25),
                note=f"pages of {o.page_size:,} rows are streamed; neither side is loaded whole",
            )
        optimised, naive = facts.get("records_per_second"), facts.get("naive_records_per_second")
        if optimised and naive:
            self.figure(
                "B", "initial load ÷ naive baseline", round(optimised / naive, 1), "×", note="records/s ratio"
            )
        resilience = facts.get("resilience_dataverse_requests")
        fault_free = facts.get("fault_free_dataverse_requests")
        if resilience is not None:
            comparable = fault_free is not None and o.resilience_contacts == o.contacts
            self.figure(
                "7",
                "resilience: extra Dataverse calls spent on retries",
                resilience - fault_free if comparable else None,
                "calls",
                note=f"{resilience:,} Dataverse requests in all"
                + (f", {fault_free:,} in the fault-free load of scenario 1" if comparable else "")
                + f"; injected {facts['resilience_dataverse_faults']}; each timer run reads metadata "
                "again and each retried record is read again",
            )

    def webhooks(self, server: ServerProcess, settings: dict[str, str]) -> None:
        o = self.o
        self.log(f"4 webhooks: {o.webhooks:,} changes, {o.senders} senders, through the local functions host")
        ids = server.call("sample_contacts", count=o.webhooks, seed=41)
        changes = {contact_id: f"Hook{n}" for n, contact_id in enumerate(ids)}
        changes_file = self.workspace.file("webhook-changes.json", changes)
        with HostProcess(settings, self.workspace) as host:
            senders = SendersProcess(
                settings,
                self.workspace,
                [
                    "--host-url",
                    host.base_url,
                    f"--function-key={host.function_key}",  # `=`: a key may start with "-"
                    "--changes",
                    str(changes_file),
                    "--senders",
                    str(o.senders),
                ],
            )
            try:
                run_worker(
                    "setup",
                    settings,
                    self.workspace,
                    timeout=120,
                    extra=["--webhook-url", senders.relay_url, f"--function-key={host.function_key}"],
                )
                server.call("watch", expected={k.lower(): v for k, v in changes.items()})
                pids = {"host": host.process.pid, "Azurite": self._azurite_pid}
                pids["emulators"] = server.process.pid
                before, cpu = server.call("stats"), {name: cpu_seconds(pid) for name, pid in pids.items()}
                result = senders.run(timeout=WORKER_TIMEOUT)
                cpu = {name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
                cpu["senders and relay"] = result["cpu_seconds"]
                stats = _diff(server.call("stats"), before)
                arrivals = server.call("arrivals")
            finally:
                senders.stop()
        done = [c for c in result["changes"] if c.get("status") == 200]
        handler = [c["handler_ms"] for c in done]
        delivery = [c["delivery_ms"] for c in done]
        end_to_end = [
            (arrivals[c["id"].lower()] - c["started"]) * 1000
            for c in result["changes"]
            if c["id"].lower() in arrivals
        ]
        seconds = result["seconds"]
        self.log(f"  {len(done)}/{o.webhooks} answered 200 in {seconds:.0f} s; outcomes {result['outcomes']}")
        for pct in (50, 95, 99):
            self.figure("4", f"webhook handler latency p{pct}", _round(percentile(handler, pct)), "ms")
        for pct in (50, 95, 99):
            self.figure(
                "4",
                f"Dynamics change → Campaign written p{pct}",
                _round(percentile(end_to_end, pct)),
                "ms",
                Goal("<", 1000) if pct == 95 else None,
                note=(
                    "from the Web API PATCH in Dynamics to the profile write in Campaign, through "
                    "Dataverse's asynchronous webhook delivery (its share: p50 "
                    f"{_round(percentile(delivery, 50))} ms) and the handler"
                    if pct == 50
                    else ""
                ),
            )
        self.figure(
            "4",
            "webhooks handled per second",
            round(len(done) / seconds, 1),
            "webhooks/s",
            note=f"{o.senders} senders, each waiting for its answer; Campaign calls "
            f"{json.dumps(stats['campaign']['engine_calls'])}",
        )
        per_webhook = {name: seconds_used / max(len(done), 1) * 1000 for name, seconds_used in cpu.items()}
        self.figure(
            "4",
            "webhooks handled ÷ R",
            round(len(done) / seconds / o.rate, 3),
            "",
            Goal(">=", 0.9),
            note=f"R = {o.rate} Campaign requests/s; one Campaign call per webhook; CPU per webhook: "
            + ", ".join(f"{name} {ms:.1f} ms" for name, ms in per_webhook.items())
            + f" ({sum(cpu.values()) / seconds:.2f} of the 2 cores busy; 0.9 R on 2 cores needs "
            f"≤ {2000 / (0.9 * o.rate):.1f} ms for all of them together)",
        )
        self.figure(
            "4",
            "webhook host: CPU per webhook",
            round(per_webhook["host"], 1),
            "ms",
            note="the functions host process (the function's own code, the Tables SDK's three ledger calls, "
            "the Campaign call); one instance core at 100 % would take "
            f"{1000 / max(per_webhook['host'], 0.1):.0f} webhooks/s",
        )
        self.figure(
            "4",
            "webhook changes not in Campaign",
            o.webhooks - len(end_to_end),
            "changes",
            Goal("==", 0),
            note=f"answers {result['statuses']}, outcomes {result['outcomes']}"
            + "".join([f"; {c['status']}: {c['error']}" for c in result["changes"] if "error" in c][:3]),
        )

    # -- 5 on its own stack -------------------------------------------------------------------------------

    def events(self) -> None:
        """Profiles already in Campaign (as after a load) and a stack small enough that the Dataverse
        emulator's full-table `$filter` scans (see README) do not set the pace."""
        o = self.o
        with self.stack("events", o.events_contacts, mirror_profiles=True) as server:
            settings = self.settings(server)
            run_worker("setup", settings, self.workspace, timeout=120)
            self.events_under_protection(server, settings)

    def events_under_protection(self, server: ServerProcess, settings: dict[str, str]) -> None:
        o = self.o
        window = o.protection_window
        self.log(
            f"5 events: {o.events:,} into Dataverse, service protection {o.protection_requests} / "
            f"{window:g} s"
        )
        published = server.call("publish_events", count=o.events, seed=51)
        server.call("protect", max_requests=o.protection_requests, window_seconds=window)
        before = server.call("activities")

        def written() -> int:
            counts = server.call("activities")
            return sum(counts[t] - before[t] for t in counts if t != "task")

        # The window starts empty, so its first burst is free: the sustained rate is read after it.
        samples: list[tuple[float, int]] = []
        running = threading.Event()
        running.set()

        def sample() -> None:
            started = time.monotonic()
            while running.is_set():
                time.sleep(0.5)
                samples.append((time.monotonic() - started, written()))

        # The run in this thread, so that its process runs in the lane's background; the sampling beside it.
        with ThreadPoolExecutor(1) as pool:
            sampler = pool.submit(sample)
            try:
                result = self.run("events", settings, server)
            finally:
                running.clear()
            sampler.result()
        server.call("protect", max_requests=None, window_seconds=window)
        after = server.call("activities")
        activities = sum(after[t] - before[t] for t in after if t != "task")
        tasks = after["task"] - before["task"]
        seconds, dataverse = result["seconds"], result["stats"]["dataverse"]
        writes_per_event = (activities + tasks) / max(activities, 1)
        bound = o.protection_rate / writes_per_event
        late = [(t, n) for t, n in samples if t >= window]
        done_at = next((t for t, n in samples if n >= activities), samples[-1][0] if samples else 0)
        sustained = None
        if late and done_at > late[0][0]:
            sustained = (activities - late[0][1]) / (done_at - late[0][0])
        self.figure(
            "5",
            "events: activities written per second",
            round(activities / seconds, 1),
            "events/s",
            note=f"{activities:,} activities and {tasks:,} follow-up tasks (hard bounces) in {seconds:.0f} s "
            f"from a fresh window; {published['by_recipient_only']:,} events named only the Campaign "
            "recipient (one Campaign read per new recipient)",
        )
        self.figure(
            "5",
            "events: sustained rate ÷ the limit's bound",
            None if sustained is None else round(sustained / bound, 3),
            "",
            note=f"bound = {o.protection_rate:,.0f} requests/s ÷ {writes_per_event:.2f} writes per event = "
            f"{bound:,.0f} events/s; sustained = "
            + (
                f"{sustained:,.0f} events/s after the first {window:g} s window (whose burst of "
                f"{o.protection_requests:,} is free)"
                if sustained is not None
                else "not measured: the run ended within the first window"
            )
            + f"; Dataverse charged {dataverse['charged'] / max(activities, 1):.2f} requests per event, "
            f"{dataverse['rejected']['requests']:,} refused 429",
        )
        self.figure(
            "5",
            "events: lost or duplicated activities",
            abs(published["events"] - activities),
            "events",
            Goal("==", 0),
            note=json.dumps(result["report"]["counts"]),
        )

    # -- 7: resilience ------------------------------------------------------------------------------------

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
            stats = _diff(server.call("stats"), before)
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
        self.facts["resilience_dataverse_requests"] = _dataverse_attempts(stats)
        self.facts["resilience_dataverse_faults"] = json.dumps(stats["dataverse"]["faults"])

    # -- the naive baseline, then 6 on the same small stack ------------------------------------------------

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


def _round(value: float | None) -> float | None:
    return None if value is None else round(value)
