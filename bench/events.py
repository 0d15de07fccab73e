"""Scenario 5 on its own stack ("events"): Campaign's tracking events written into Dataverse as
activities, under Dataverse's service protection limit."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.processes import ServerProcess, run_worker
from bench.report import Goal


class Events:
    """The scenario as a part of `bench.scenarios.Bench` (which provides `o`, `stack`, `settings`, `run`,
    `figure`, `log` and `workspace`)."""

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
