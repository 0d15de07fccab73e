"""`make bench`: the integration's figures on this machine, printed as one table and saved to
`bench/results/latest.json` (and into `bench/README.md` between its markers).

Starts, for each stack, a fresh Azurite and the Dataverse and Campaign emulators in their own process
(`bench.server`); every sync run is its own process (`bench.worker`), the webhooks go through the local
functions host (`emulators.funchost`). The stacks run in three lanes side by side (`LANES`). Every size
is an option; one below the issue's is printed with its factor. Dev/test only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from bench.options import Options
from bench.processes import ProcessError, Workspace, end_all, run_in_background
from bench.report import machine, notes, save, text_table, update_readmes
from bench.scenarios import Bench
from emulators.azurite import AzuriteError


@dataclass(frozen=True)
class Lane:
    name: str
    background: bool
    stacks: tuple[str, ...]


# Three lanes side by side, each a thread of this driver running its stacks in turn. Lane "main" holds the
# figures about speed (1, 3, 4, 8) and runs at normal priority; the others run in the background
# (SCHED_IDLE), so they take the CPU it leaves. Their figures (correctness, memory, rates against their
# own limits) do not depend on speed, except the events rate, which is measured against its limit and
# says so.
LANES = (
    Lane("main", False, ("main_stack", "scaleout")),
    Lane("faults", True, ("resilience",)),
    Lane("others", True, ("events", "small_stack", "baseline_and_optout", "concurrency")),
)


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for option in dataclasses.fields(Options):
        parser.add_argument(
            "--" + option.name.replace("_", "-"), type=type(option.default), default=option.default
        )
    return Options(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {text}", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    load_at_start = os.getloadavg()[0]
    print(f"Machine: {machine()}; load average at start {load_at_start:.2f}")
    print("Settings:")
    for line in options.lines():
        print(f"  {line}")
    workspace = Workspace()
    figures: list = []
    facts: dict = {}
    failures: list[str] = []

    def run_lane(lane: Lane) -> None:
        if lane.background:
            run_in_background()
        bench = Bench(
            options,
            workspace.lane(lane.name),
            log=lambda text: log(f"{lane.name}: {text}"),
            figures=figures,
            facts=facts,
        )
        try:
            for stack in lane.stacks:
                getattr(bench, stack)()
        except (ProcessError, AzuriteError) as exc:
            failures.append(f"lane {lane.name}: {exc}")

    threads = [threading.Thread(target=run_lane, args=(lane,), daemon=True) for lane in LANES]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        failures.append("interrupted")
        end_all()
    Bench(options, workspace, log=log, figures=figures, facts=facts).comparisons()
    failure = "; ".join(failures)
    seconds = time.monotonic() - started
    # Scenario order, whatever order the stacks ran them in.
    figures = sorted(figures, key=lambda f: "12345678B".index(f.scenario))
    settings = {
        **dataclasses.asdict(options),
        "described": options.lines(),
        # Other work on the machine takes CPU from the benchmark's processes.
        "load_average_at_start": round(load_at_start, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
    }
    document = save(figures, settings, wall_seconds=seconds)
    if not failure:
        update_readmes(document, figures, options.lines())
    print()
    print(f"Benchmark, {document['date']}, {document['machine']}")
    print(text_table(figures))
    for line in notes(figures):
        print(f"  - {line}")
    print(
        f"\nWall time {seconds / 60:.1f} min; load average at end {os.getloadavg()[0]:.2f}. "
        "Saved bench/results/latest.json"
    )
    if failure:
        print(f"bench: FAILED: {failure}\nlogs: {workspace.path}")
        return 1
    workspace.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
