"""`make demo`: the whole integration, end to end, on this machine.

Starts Azurite, the Dataverse and Campaign emulators and the local functions host (a separate process,
as `func start` would be), seeds Dynamics, registers the webhook with `d365 setup`, runs the initial
load, then makes live changes on both sides and shows them arriving. Ends with a report, a health check
(exit code 1 if the two systems disagree) and a one-line summary. Dev/test only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulators.azurite import Azurite
from emulators.processes import HostProcess
from emulators.stack import VEHICLE_MAPPING, Stack
from shared.telemetry.setup import CONNECTION_STRING as TELEMETRY_SETTING

ROOT = Path(__file__).resolve().parents[1]
# Dataverse's asynchronous service delivers webhook jobs in parallel, out of order and now and then twice.
LIKE_DATAVERSE = {"webhook_workers": 8, "webhook_max_delay_seconds": 0.2, "webhook_duplicate_rate": 0.05}
ACTIVITY_TABLES = {
    "send": "acs_emailsend",
    "open": "acs_emailopen",
    "click": "acs_emailclick",
    "bounce": "acs_emailbounce",
}


def demo_sync_config() -> dict[str, Any]:
    """The shipped contact mapping plus the emulator's custom table (vehicles), two-way opt-out."""
    config = json.loads((ROOT / "sync_config.json").read_text())
    config["tables"].append(VEHICLE_MAPPING)
    config["events"]["activity_tables"] = ACTIVITY_TABLES
    return config


class Console:
    """Readable progress for a person: a bar on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._last_line = 0.0
        self._last_printed = (-1, -1)

    def step(self, text: str) -> None:
        print(f"\n▶ {text}", flush=True)

    def info(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def progress(self, label: str, done: int, total: int, extra: str = "") -> None:
        width = 30
        filled = int(width * min(done, total) / max(total, 1))
        line = f"  {label:<28} [{'#' * filled}{'.' * (width - filled)}] {done:>6}/{total:<6} {extra}"
        if self.tty:
            print("\r" + line, end="", flush=True)
        elif (done, total) != self._last_printed and (
            time.monotonic() - self._last_line > 2 or done == total
        ):
            print(line, flush=True)
            self._last_line, self._last_printed = time.monotonic(), (done, total)

    def end_progress(self) -> None:
        if self.tty:
            print(flush=True)


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class Demo:
    def __init__(self, *, contacts: int, vehicles: int, events: int, edits: int, output: Path) -> None:
        self.counts = {"contacts": contacts, "vehicles": vehicles, "events": events, "edits": edits}
        self.output = output
        self.console = Console()
        self.report: dict[str, Any] = {
            "started_at": datetime.now(UTC).isoformat(),
            "settings": dict(self.counts),
        }
        self.host: HostProcess | None = None
        self.azurite: Azurite | None = None
        self.stack: Stack | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="acsd365-demo-")

    # -- start and stop --------------------------------------------------------------------------------

    def start(self) -> None:
        c = self.console
        c.step("Starting Azurite, the Dataverse and Campaign emulators")
        self.azurite = Azurite().start()
        self.stack = Stack(azurite=self.azurite, dataverse_options=LIKE_DATAVERSE).start()
        c.info(f"Dataverse  {self.stack.dataverse.api_url}")
        c.info(f"Campaign   {self.stack.campaign.campaign_url}")
        c.info(f"Azurite    table port {self.azurite.ports['table']}, blob port {self.azurite.ports['blob']}")
        self.settings = self.stack.app_settings(
            sync_config=demo_sync_config(),
            CONTACTS_SYNC_SCHEDULE="*/15 * * * * *",
            EVENTS_PUSH_SCHEDULE="*/5 * * * * *",
            OPTOUT_SYNC_SCHEDULE="*/5 * * * * *",
            VERIFY_SCHEDULE="0 30 2 * * *",  # switched off (VERIFY_SYNC_ENABLED); the demo runs verify itself
            FUNCTION_TIME_BUDGET_SECONDS="60",
            ACS_REQUESTS_PER_SECOND="2000",
            ACS_MAX_CONCURRENCY="8",
            D365_BATCH_SIZE="500",
            LOG_LEVEL="WARNING",
        )
        # A real Application Insights resource of the developer's, when one is set: the host sends it the
        # app's traces, dependencies and metrics (shared/telemetry).
        if os.environ.get(TELEMETRY_SETTING):
            self.settings[TELEMETRY_SETTING] = os.environ[TELEMETRY_SETTING]
            c.info("Telemetry  to the Application Insights resource of APPLICATIONINSIGHTS_CONNECTION_STRING")
        # The demo process itself reads the same settings (d365 setup, health check).
        os.environ.update(self.settings)

    def start_host(self) -> None:
        c = self.console
        c.step("Starting the local functions host (what `func start` does)")
        self.host = HostProcess(self.settings, Path(self.tmp.name), timers=True)
        c.info(
            f"Functions host {self.host.base_url} (functions: contacts_sync, events_push, optout_sync, "
            "webhook_d365, …)"
        )

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
        if self.stack is not None:
            self.stack.stop()
        if self.azurite is not None:
            self.azurite.stop()
        self.tmp.cleanup()

    # -- the story ---------------------------------------------------------------------------------------

    def seed(self) -> None:
        c, dv = self.console, self.stack.dataverse
        c.step(
            f"Seeding Dynamics with {self.counts['contacts']:,} contacts and "
            f"{self.counts['vehicles']} vehicles"
        )
        self.contact_ids = dv.seed_contacts(self.counts["contacts"], seed=2026)
        rng = random.Random(7)
        self.vehicle_ids = [
            dv.create_row(
                "cr123_vehicle",
                {
                    "cr123_name": f"Vehicle {n}",
                    "cr123_vin": f"VIN{n:014d}",
                    "cr123_model": 100000000 + n % 4,
                    "cr123_price": 15000 + rng.randint(0, 40000),
                    "cr123_Contact@odata.bind": f"/contacts({self.contact_ids[n]})",
                },
            )
            for n in range(self.counts["vehicles"])
        ]
        c.info(f"{len(self.contact_ids):,} contacts (some inactive), {len(self.vehicle_ids)} vehicles")

    def d365_setup(self) -> None:
        from shared.cli import main as cli

        c = self.console
        c.step("Running `python -m shared.cli d365 setup` (activity tables, change tracking, webhook)")
        out = io.StringIO()
        code = cli(
            [
                "d365",
                "setup",
                "--webhook-url",
                f"{self.host.base_url}/api/webhook_d365",
                # `=`: a generated key may start with "-", which argparse would take for an option
                f"--function-key={self.host.function_key}",
            ],
            out=out,
        )
        for line in out.getvalue().splitlines()[-12:]:
            c.info(line)
        if code == 2:
            raise RuntimeError("d365 setup failed")

    def initial_load(self) -> None:
        c, campaign = self.console, self.stack.campaign
        total = self.counts["contacts"] + self.counts["vehicles"]
        c.step("Initial load: contacts_sync reads Dynamics by change tracking and writes Campaign")
        campaign.reset_counters()
        started = time.monotonic()
        self.host.trigger("contacts_sync")
        while True:
            done = campaign.engine_calls["insert"]
            rate = done / max(time.monotonic() - started, 1e-6)
            c.progress("records loaded", done, total, f"{rate:,.0f}/s")
            if done >= total or time.monotonic() - started > 150:
                break
            time.sleep(0.25)
        c.end_progress()
        seconds = time.monotonic() - started
        self.report["initial_load"] = {
            "records": campaign.engine_calls["insert"],
            "seconds": round(seconds, 1),
            "records_per_second": round(campaign.engine_calls["insert"] / seconds, 1),
            "campaign_calls": dict(campaign.engine_calls),
        }
        c.info(
            f"{campaign.engine_calls['insert']:,} records in {seconds:.1f} s; Campaign calls per record: "
            f"{campaign.engine_calls['total'] / max(total, 1):.2f}"
        )

    def live_changes(self) -> None:
        c, dv, campaign = self.console, self.stack.dataverse, self.stack.campaign
        profiles = campaign.store.table("profile")
        edits = self.counts["edits"]
        rng = random.Random(11)
        c.step(
            f"Live changes in Dynamics: {edits} edits, {edits // 10} deletes, {edits // 4} opt-outs "
            "(webhook → Campaign; delivered as Dataverse does: concurrently, out of order, some twice)"
        )
        campaign.reset_counters()
        pending: dict[str, tuple[float, Callable[[], bool]]] = {}
        candidates = rng.sample(self.contact_ids[self.counts["vehicles"] :], edits + edits // 10 + edits // 4)
        for n, contact_id in enumerate(candidates[:edits]):
            name = f"Edited{n}"
            dv.update_row("contact", contact_id, {"firstname": name, "address1_city": "Reykjavik"})
            pending[contact_id] = (
                time.monotonic(),
                lambda cid=contact_id, name=name: (
                    (profiles.get_by_key(cid.lower()) or {}).get("firstName") == name
                ),
            )
        for contact_id in candidates[edits : edits + edits // 10]:
            dv.delete_row("contact", contact_id)
            pending[contact_id] = (
                time.monotonic(),
                lambda cid=contact_id: profiles.get_by_key(cid.lower()) is None,
            )
        for contact_id in candidates[edits + edits // 10 :]:
            dv.update_row("contact", contact_id, {"donotemail": True})
            pending[contact_id] = (
                time.monotonic(),
                lambda cid=contact_id: bool((profiles.get_by_key(cid.lower()) or {}).get("blackListEmail")),
            )
        self.webhook_latencies = self._await(pending, "changes in Campaign")
        self.report["webhooks"] = {
            "changes": self._awaited,
            "arrived": len(self.webhook_latencies),
            **self._latency(self.webhook_latencies),
            "delivery": dv.webhooks.stats.as_dict(),
        }
        c.info(
            f"{len(self.webhook_latencies)}/{self._awaited} changes arrived; "
            f"Dynamics change → Campaign written: p50 {self.report['webhooks']['p50_ms']} ms, "
            f"p95 {self.report['webhooks']['p95_ms']} ms"
        )

    def campaign_optouts(self) -> None:
        c, dv, campaign = self.console, self.stack.dataverse, self.stack.campaign
        rng = random.Random(13)
        profiles = campaign.store.table("profile")
        chosen = rng.sample(self.contact_ids[self.counts["vehicles"] :], self.counts["edits"] // 4)
        chosen = [cid for cid in chosen if profiles.get_by_key(cid.lower()) is not None]
        c.step(f"Opt-outs in Campaign: {len(chosen)} profiles set blackListPhone (optout_sync → Dynamics)")
        pending = {}
        for contact_id in chosen:
            campaign.update_profile(profiles.get_by_key(contact_id.lower())["PKey"], {"blackListPhone": True})
            pending[contact_id] = (
                time.monotonic(),
                lambda cid=contact_id: bool((dv.get_row("contact", cid) or {}).get("donotphone")),
            )
        latencies = self._await(pending, "opt-outs in Dynamics")
        self.report["optout_campaign_to_dynamics"] = {
            "changes": self._awaited,
            "arrived": len(latencies),
            **self._latency(latencies),
        }
        c.info(
            f"{len(latencies)}/{self._awaited} opt-outs moved to Dynamics; propagation p50 "
            f"{self.report['optout_campaign_to_dynamics']['p50_ms']} ms (timer every 5 s here; default 5 min)"
        )

    def email_events(self) -> None:
        c, dv, campaign = self.console, self.stack.dataverse, self.stack.campaign
        c.step(
            f"Campaign email events: {self.counts['events']:,} sends/opens/clicks/bounces (events_push → "
            "timelines)"
        )
        events = campaign.generate_events(self.counts["events"], seed=5)
        live = {str(cid).lower() for cid in (r["contactid"] for r in dv.rows("contact"))}
        expected = sum(1 for e in events if self._event_contact(e) in live)
        started = time.monotonic()

        def written() -> int:
            return sum(len(dv.rows(table)) for table in ACTIVITY_TABLES.values())

        while True:
            done = written()
            c.progress(
                "activities on timelines",
                done,
                expected,
                f"{done / max(time.monotonic() - started, 1e-6):,.0f}/s",
            )
            if done >= expected or time.monotonic() - started > 90:
                break
            time.sleep(0.5)
        c.end_progress()
        self.report["events"] = {
            "published": len(events),
            "expected_activities": expected,
            "activities": written(),
            "seconds": round(time.monotonic() - started, 1),
        }

    def _event_contact(self, event: dict[str, Any]) -> str | None:
        profile = (event.get("data") or {}).get("profile") or {}
        if profile.get("externalId"):
            return str(profile["externalId"]).lower()
        row = self.stack.campaign.store.table("profile").get(profile.get("recipientId"))
        return str(row.get("externalId") or "").lower() if row else None

    def _await(self, pending: dict[str, tuple[float, Callable[[], bool]]], label: str) -> list[float]:
        latencies: list[float] = []
        total = len(pending)
        self._awaited = total
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, (started, arrived) in list(pending.items()):
                if arrived():
                    latencies.append((time.monotonic() - started) * 1000)
                    del pending[key]
            self.console.progress(label, total - len(pending), total)
            time.sleep(0.05)
        self.console.end_progress()
        return latencies

    @staticmethod
    def _latency(values: list[float]) -> dict[str, float | None]:
        return {
            "p50_ms": round(percentile(values, 50), 0) if values else None,
            "p95_ms": round(percentile(values, 95), 0) if values else None,
            "mean_ms": round(statistics.fmean(values), 0) if values else None,
        }

    # -- verdict -------------------------------------------------------------------------------------------

    def verify(self) -> list[str]:
        """`python -m shared.cli verify`: both systems compared record by record, per mapping, with the
        mapping's own rules; its JSON lines are printed and kept in the report."""
        from shared.app import App
        from shared.cli import main as cli
        from shared.settings import load_settings

        c = self.console
        c.step("Verify: `python -m shared.cli verify` reads both systems and compares every record")
        out = io.StringIO()
        code = cli(["verify"], app=App(load_settings(self.settings)), out=out)
        lines = out.getvalue().splitlines()
        for line in lines:
            print(line if line.startswith("{") else f"  {line}", flush=True)
        results = [json.loads(line) for line in lines if line.startswith("{")]
        self.report["verify"] = results
        problems = [
            f"verify: {r['mapping']}: {r['remaining']} record(s) differ "
            f"({r['missing']} missing, {r['extra']} extra, {r['mismatched']} mismatched)"
            for r in results
            if r.get("remaining")
        ]
        if code == 2:
            problems.append("verify failed: " + "; ".join(r.get("error") or "" for r in results))
        return problems

    def health_check(self) -> list[str]:
        """Both systems agree: every Dynamics contact is a Campaign profile with the mapped values and the
        same opt-out flags, nothing extra in Campaign, every vehicle there, no dead letters."""
        from shared.app import App
        from shared.settings import load_settings

        c, dv, campaign = self.console, self.stack.dataverse, self.stack.campaign
        c.step("Health check: comparing Dynamics and Campaign record by record")
        problems: list[str] = []
        profiles = {p["externalId"]: p for p in campaign.snapshot("profile")}
        rows = {str(r["contactid"]).lower(): r for r in dv.rows("contact")}
        if profiles.keys() != rows.keys():
            problems.append(
                f"{len(rows.keys() - profiles.keys())} contacts missing in Campaign, "
                f"{len(profiles.keys() - rows.keys())} profiles that Dynamics no longer has"
            )
        texts = (("firstname", "firstName"), ("lastname", "lastName"), ("emailaddress1", "email"))
        flags = (
            ("donotemail", "blackListEmail"),
            ("donotphone", "blackListPhone"),
            ("donotpostalmail", "blackListPostalMail"),
            ("donotfax", "blackListFax"),
        )
        differing = 0
        for contact_id, row in rows.items():
            profile = profiles.get(contact_id)
            if profile is None:
                continue
            city = (profile.get("location") or {}).get("city") or ""
            same = city == (row.get("address1_city") or "")
            same &= all((row.get(d) or "") == (profile.get(a) or "") for d, a in texts)
            same &= all(bool(row.get(d)) == bool(profile.get(a)) for d, a in flags)
            differing += not same
        if differing:
            problems.append(f"{differing} profiles differ from their contact")
        vehicles = len(campaign.snapshot("cusVehicle"))
        if vehicles != len(dv.rows("cr123_vehicle")):
            problems.append(f"{vehicles} vehicles in Campaign, {len(dv.rows('cr123_vehicle'))} in Dynamics")
        events = self.report.get("events", {})
        if events and events["activities"] != events["expected_activities"]:
            problems.append(
                f"{events['activities']} activities written, {events['expected_activities']} expected"
            )
        store = App(load_settings(self.settings)).store
        dead = store.deadletters.count()
        self.report["dead_letters"] = dead
        if dead:
            problems.append(f"{dead} dead letters")
        self.report["health"] = {
            "contacts": len(rows),
            "profiles": len(profiles),
            "vehicles": vehicles,
            "problems": problems,
        }
        for line in problems or ["Dynamics and Campaign agree on every record."]:
            c.info(line)
        return problems

    def save_report(self) -> Path:
        self.output.mkdir(parents=True, exist_ok=True)
        path = self.output / f"demo-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        self.report["ended_at"] = datetime.now(UTC).isoformat()
        path.write_text(json.dumps(self.report, indent=2, default=str))
        return path


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
    demo = Demo(
        contacts=args.contacts,
        vehicles=args.vehicles,
        events=args.events,
        edits=args.edits,
        output=args.output,
    )
    started = time.monotonic()
    problems: list[str] = ["did not finish"]
    try:
        demo.start()
        demo.seed()
        demo.start_host()
        demo.d365_setup()
        demo.initial_load()
        demo.live_changes()
        demo.campaign_optouts()
        demo.email_events()
        problems = demo.verify() + demo.health_check()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the demo started", flush=True)
        problems = ["interrupted"]
    except Exception as exc:  # the summary line must still come, with the reason
        problems = [f"{type(exc).__name__}: {exc}"]
    finally:
        demo.stop()
    seconds = time.monotonic() - started
    demo.report["seconds"] = round(seconds, 1)
    path = demo.save_report()
    load = demo.report.get("initial_load", {})
    hooks = demo.report.get("webhooks", {})
    print(f"\nFull report: {path}")
    if problems:
        print(f"demo: FAILED in {seconds:.0f} s: {'; '.join(problems)}")
        return 1
    print(
        f"demo: OK in {seconds:.0f} s: {load.get('records', 0):,} records loaded at "
        f"{load.get('records_per_second', 0):,.0f}/s, webhook p95 {hooks.get('p95_ms')} ms, "
        f"{demo.report['events']['activities']:,} activities, 0 dead letters, systems agree"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
