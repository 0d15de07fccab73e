"""The sync process of a benchmark: one flow run of the production code, in its own OS process, as a warm
Functions worker would run it. Prints one JSON line: the run report, the run's wall and CPU seconds and
the process's peak resident memory.

    python -m bench.worker ingress|optout|events --settings <app settings JSON file> [--workers N]
    python -m bench.worker setup --settings <file> [--webhook-url URL --function-key KEY]

`--workers` overrides the ingress pool size (the naive baseline runs one record at a time).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import resource
import sys
import time
from pathlib import Path


def peak_rss_kib() -> int:
    """The process's high-water mark of resident memory (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_flow(flow: str, workers: int | None) -> dict:
    from shared.app import get_app
    from shared.flows.ingress import IngressFlow

    app = get_app()
    if flow == "ingress" and workers is not None:
        ingress = app.ingress
        runner = IngressFlow(
            config=app.config,
            dataverse=app.dataverse,
            campaign=app.campaign,
            store=app.store,
            options=dataclasses.replace(ingress.options, workers=workers),
            optout=app.optout_reconciler,
        ).run
    else:
        runner = {"ingress": app.contacts_sync, "optout": app.optout_sync, "events": app.events_push}[flow]
    cpu = time.process_time()
    started = time.monotonic()
    report = runner()
    return {
        "seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time() - cpu,
        "report": report.to_dict(),
    }


def run_setup(webhook_url: str | None, function_key: str | None) -> dict:
    from shared.cli import main as cli

    out = io.StringIO()
    webhook = ["--webhook-url", webhook_url, f"--function-key={function_key}"] if webhook_url else []
    code = cli(["d365", "setup", *webhook], out=out)
    if code == 2:
        raise RuntimeError("d365 setup failed:\n" + out.getvalue())
    return {"exit_code": code}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("flow", choices=["ingress", "optout", "events", "setup"])
    parser.add_argument("--settings", required=True, type=Path)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--webhook-url")
    parser.add_argument("--function-key")
    args = parser.parse_args(argv)
    # As the Functions host does: app settings are the environment, read when `shared` is imported.
    os.environ.update(json.loads(args.settings.read_text()))
    if args.flow == "setup":
        result = run_setup(args.webhook_url, args.function_key)
    else:
        result = run_flow(args.flow, args.workers)
    result["peak_rss_kib"] = peak_rss_kib()
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    sys.exit(main())
