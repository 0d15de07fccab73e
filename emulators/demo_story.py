"""The demo's story, step by step: Dynamics seeded, the webhook registered, the initial load, live changes
in Dynamics, opt-outs in Campaign and Campaign's email events, each shown arriving on the other side and
its figures kept in the report."""

from __future__ import annotations

import io
import random
import time
from typing import Any

from emulators.demo_console import Console
from emulators.demo_measure import Pending, await_arrivals, latency_summary
from emulators.demo_stack import ACTIVITY_TABLES, LocalStack


class Story:
    """The steps, in the order `make demo` runs them (the functions host starts between `seed` and
    `d365_setup`); each one writes its figures into `report`."""

    def __init__(self, local: LocalStack, console: Console, counts: dict[str, int], report: dict[str, Any]):
        self.local = local
        self.console = console
        self.counts = counts
        self.report = report

    def seed(self) -> None:
        c, dv = self.console, self.local.stack.dataverse
        c.step(
            f"Seeding Dynamics with {self.counts['contacts']:,} contacts and "
            f"{self.counts['vehicles']} vehicles"
        )
        self.contact_ids = dv.seed_contacts(self.counts["contacts"], seed=2026)
        rng = random.Random(7)
        vehicle_ids = [
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
        c.info(f"{len(self.contact_ids):,} contacts (some inactive), {len(vehicle_ids)} vehicles")

    def d365_setup(self) -> None:
        from shared.cli import main as cli

        c, host = self.console, self.local.host
        c.step("Running `python -m shared.cli d365 setup` (activity tables, change tracking, webhook)")
        out = io.StringIO()
        code = cli(
            [
                "d365",
                "setup",
                "--webhook-url",
                f"{host.base_url}/api/webhook_d365",
                # `=`: a generated key may start with "-", which argparse would take for an option
                f"--function-key={host.function_key}",
            ],
            out=out,
        )
        for line in out.getvalue().splitlines()[-12:]:
            c.info(line)
        if code == 2:
            raise RuntimeError("d365 setup failed")

    def initial_load(self) -> None:
        c, campaign = self.console, self.local.stack.campaign
        total = self.counts["contacts"] + self.counts["vehicles"]
        c.step("Initial load: contacts_sync reads Dynamics by change tracking and writes Campaign")
        campaign.reset_counters()
        started = time.monotonic()
        self.local.host.trigger("contacts_sync")
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
        c, dv, campaign = self.console, self.local.stack.dataverse, self.local.stack.campaign
        profiles = campaign.store.table("profile")
        edits = self.counts["edits"]
        rng = random.Random(11)
        c.step(
            f"Live changes in Dynamics: {edits} edits, {edits // 10} deletes, {edits // 4} opt-outs "
            "(webhook → Campaign; delivered as Dataverse does: concurrently, out of order, some twice)"
        )
        campaign.reset_counters()
        pending: Pending = {}
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
        changes = len(pending)
        latencies = await_arrivals(pending, "changes in Campaign", c)
        self.report["webhooks"] = {
            "changes": changes,
            "arrived": len(latencies),
            **latency_summary(latencies),
            "delivery": dv.webhooks.stats.as_dict(),
        }
        c.info(
            f"{len(latencies)}/{changes} changes arrived; "
            f"Dynamics change → Campaign written: p50 {self.report['webhooks']['p50_ms']} ms, "
            f"p95 {self.report['webhooks']['p95_ms']} ms"
        )

    def campaign_optouts(self) -> None:
        c, dv, campaign = self.console, self.local.stack.dataverse, self.local.stack.campaign
        rng = random.Random(13)
        profiles = campaign.store.table("profile")
        chosen = rng.sample(self.contact_ids[self.counts["vehicles"] :], self.counts["edits"] // 4)
        chosen = [cid for cid in chosen if profiles.get_by_key(cid.lower()) is not None]
        c.step(f"Opt-outs in Campaign: {len(chosen)} profiles set blackListPhone (optout_sync → Dynamics)")
        pending: Pending = {}
        for contact_id in chosen:
            campaign.update_profile(profiles.get_by_key(contact_id.lower())["PKey"], {"blackListPhone": True})
            pending[contact_id] = (
                time.monotonic(),
                lambda cid=contact_id: bool((dv.get_row("contact", cid) or {}).get("donotphone")),
            )
        changes = len(pending)
        latencies = await_arrivals(pending, "opt-outs in Dynamics", c)
        self.report["optout_campaign_to_dynamics"] = {
            "changes": changes,
            "arrived": len(latencies),
            **latency_summary(latencies),
        }
        c.info(
            f"{len(latencies)}/{changes} opt-outs moved to Dynamics; propagation p50 "
            f"{self.report['optout_campaign_to_dynamics']['p50_ms']} ms (timer every 5 s here; default 5 min)"
        )

    def email_events(self) -> None:
        c, dv, campaign = self.console, self.local.stack.dataverse, self.local.stack.campaign
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
        row = self.local.stack.campaign.store.table("profile").get(profile.get("recipientId"))
        return str(row.get("externalId") or "").lower() if row else None
