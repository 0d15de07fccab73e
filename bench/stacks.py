"""What every scenario stands on: a fresh stack, the sync process's settings, one measured run, and the
readings taken of them.

Every load is a `bench.worker` process (the sync process) against a `bench.server` process (the
emulators), with state in the driver's Azurite. Each stack is fresh, so each load starts from an empty
Campaign and an empty ledger, as a real first load does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.options import Options
from bench.processes import ServerProcess, Workspace, adopt, cpu_seconds, run_worker
from bench.report import Figure
from emulators.azurite import Azurite

MIB = 1024
WORKER_TIMEOUT = 1800


def diff(after: Any, before: Any) -> Any:
    if isinstance(after, dict):
        return {k: diff(v, before.get(k, 0) if isinstance(before, dict) else 0) for k, v in after.items()}
    return after - before


def mismatches(state: dict[str, Any]) -> int:
    return state["missing"] + state["extra"] + state["differing"] + state["duplicates"]


def dataverse_attempts(stats: dict[str, Any]) -> int:
    d = stats["dataverse"]
    return d["requests"] + sum(d["faults"].values()) + sum(d["rejected"].values())


class Stacks:
    """What a lane's scenarios use: its options (`o`), `workspace` and `log`, the `figures` and `facts`
    that lanes share; `stack` starts a fresh stack, `settings` and `run` run the sync process on it."""

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
        self.azurite_pid = 0

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
            self.azurite_pid = azurite._process.pid
            adopt(self.azurite_pid)
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
        pids = {"emulators": server.process.pid, "Azurite": self.azurite_pid}
        before, cpu = server.call("stats"), {name: cpu_seconds(pid) for name, pid in pids.items()}
        result = run_worker(flow, settings, self.workspace, timeout=WORKER_TIMEOUT, extra=list(extra))
        result["stats"] = diff(server.call("stats"), before)
        result["other_cpu_seconds"] = {name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
        result["load_average"] = os.getloadavg()[0]
        counts = result.get("report", {}).get("counts", {})
        self.log(f"  {flow} run: {result.get('seconds', 0):.1f} s, {json.dumps(counts)}")
        return result

    def register_webhook(self, settings: dict[str, str], url: str, function_key: str) -> None:
        """`d365 setup` pointing Dataverse's webhook at `url` (a host, a balancer or the senders' relay)."""
        extra = ["--webhook-url", url, f"--function-key={function_key}"]
        run_worker("setup", settings, self.workspace, timeout=120, extra=extra)

    @staticmethod
    def records(result: dict[str, Any]) -> int:
        counts = result["report"]["counts"]
        return sum(counts.get(k, 0) for k in ("created", "updated", "unchanged"))
