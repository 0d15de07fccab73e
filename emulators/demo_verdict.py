"""The demo's verdict: `shared.cli verify` and the demo's own health check, each a list of problems (none
when Dynamics and Campaign agree), and the report written to disk."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulators.demo_console import Console
from emulators.demo_stack import LocalStack


def verify(local: LocalStack, console: Console, report: dict[str, Any]) -> list[str]:
    """`python -m shared.cli verify`: both systems compared record by record, per mapping, with the
    mapping's own rules; its JSON lines are printed and kept in the report."""
    from shared.app import App
    from shared.cli import main as cli
    from shared.settings import load_settings

    console.step("Verify: `python -m shared.cli verify` reads both systems and compares every record")
    out = io.StringIO()
    code = cli(["verify"], app=App(load_settings(local.settings)), out=out)
    lines = out.getvalue().splitlines()
    for line in lines:
        print(line if line.startswith("{") else f"  {line}", flush=True)
    results = [json.loads(line) for line in lines if line.startswith("{")]
    report["verify"] = results
    problems = [
        f"verify: {r['mapping']}: {r['remaining']} record(s) differ "
        f"({r['missing']} missing, {r['extra']} extra, {r['mismatched']} mismatched)"
        for r in results
        if r.get("remaining")
    ]
    if code == 2:
        problems.append("verify failed: " + "; ".join(r.get("error") or "" for r in results))
    return problems


def health_check(local: LocalStack, console: Console, report: dict[str, Any]) -> list[str]:
    """Both systems agree: every Dynamics contact is a Campaign profile with the mapped values and the
    same opt-out flags, nothing extra in Campaign, every vehicle there, no dead letters."""
    from shared.app import App
    from shared.settings import load_settings

    dv, campaign = local.stack.dataverse, local.stack.campaign
    console.step("Health check: comparing Dynamics and Campaign record by record")
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
    events = report.get("events", {})
    if events and events["activities"] != events["expected_activities"]:
        problems.append(
            f"{events['activities']} activities written, {events['expected_activities']} expected"
        )
    store = App(load_settings(local.settings)).store
    dead = store.deadletters.count()
    report["dead_letters"] = dead
    if dead:
        problems.append(f"{dead} dead letters")
    report["health"] = {
        "contacts": len(rows),
        "profiles": len(profiles),
        "vehicles": vehicles,
        "problems": problems,
    }
    for line in problems or ["Dynamics and Campaign agree on every record."]:
        console.info(line)
    return problems


def save_report(report: dict[str, Any], output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"demo-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    report["ended_at"] = datetime.now(UTC).isoformat()
    path.write_text(json.dumps(report, indent=2, default=str))
    return path
