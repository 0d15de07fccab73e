"""`make demo`: the whole integration, end to end, on this machine.

Starts Azurite, the Dataverse and Campaign emulators and the local functions host (a separate process,
as `func start` would be), seeds Dynamics, registers the webhook with `d365 setup`, runs the initial
load, then makes live changes on both sides and shows them arriving. Ends with a report, a health check
(exit code 1 if the two systems disagree) and a one-line summary. Dev/test only.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulators.demo_console import Console
from emulators.demo_stack import ROOT, LocalStack
from emulators.demo_story import Story
from emulators.demo_verdict import health_check, save_report, verify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--output", type=Path, default=ROOT / "demo-output")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    counts = {
        "contacts": args.contacts,
        "vehicles": args.vehicles,
        "events": args.events,
        "edits": args.edits,
    }
    console = Console()
    report: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(), "settings": dict(counts)}
    local = LocalStack(console)
    story = Story(local, console, counts, report)
    started = time.monotonic()
    problems: list[str] = ["did not finish"]
    try:
        local.start()
        story.seed()
        local.start_host()
        story.d365_setup()
        story.initial_load()
        story.live_changes()
        story.campaign_optouts()
        story.email_events()
        problems = verify(local, console, report) + health_check(local, console, report)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the demo started", flush=True)
        problems = ["interrupted"]
    except Exception as exc:  # the summary line must still come, with the reason
        problems = [f"{type(exc).__name__}: {exc}"]
    finally:
        local.stop()
    seconds = time.monotonic() - started
    report["seconds"] = round(seconds, 1)
    path = save_report(report, args.output)
    load = report.get("initial_load", {})
    hooks = report.get("webhooks", {})
    print(f"\nFull report: {path}")
    if problems:
        print(f"demo: FAILED in {seconds:.0f} s: {'; '.join(problems)}")
        return 1
    print(
        f"demo: OK in {seconds:.0f} s: {load.get('records', 0):,} records loaded at "
        f"{load.get('records_per_second', 0):,.0f}/s, webhook p95 {hooks.get('p95_ms')} ms, "
        f"{report['events']['activities']:,} activities, 0 dead letters, systems agree"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
