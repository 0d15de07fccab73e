"""`status` and `deadletters` against the local functions host: the timer is run through the admin API and
a webhook through its HTTP route, failures are injected in Campaign, and the status endpoint, the CLI
and the ledger must agree; `deadletters retry` clears the dead letters once the cause is fixed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from unittest.mock import ANY

import pytest
import requests

from emulators.common import FaultConfig
from emulators.funchost import FunctionHost
from shared.cli import OK, WARNINGS
from shared.store import RecordStatus
from tests.builders.sync_config import EMAIL, FIRST_NAME, LAST_NAME, cli, contacts_mapping, sync_config
from tests.d365.fixtures.webhook_bodies import context, entity, to_wire, wcf_date

CONFIG = sync_config(contacts_mapping(FIRST_NAME, LAST_NAME, EMAIL))


@pytest.fixture
def running(stack, function_app_env):
    """The process-global app on the stack (two attempts per record, no HTTP retries: failures show at
    once) and the local functions host serving the function folders."""
    app = function_app_env(CONFIG, HTTP_MAX_RETRIES="0", RETRY_MAX_ATTEMPTS="2")
    with FunctionHost(run_timers=False) as host:
        yield host, app


def run_timer(host: FunctionHost, app, flow: str) -> dict:
    """Invoke a timer through the host's admin API and wait for the run report it saves at the end."""
    before = (app.store.reports.latest(flow) or {}).get("run_id")
    answer = requests.post(
        f"{host.base_url}/admin/functions/{flow}",
        headers={"x-functions-key": host.master_key},
        json={},
        timeout=10,
    )
    assert answer.status_code == 202
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        report = app.store.reports.latest(flow)
        if report is not None and report["run_id"] != before:
            return report
        time.sleep(0.05)
    raise AssertionError(f"{flow} did not finish")


def make_failed_records_due(app) -> None:
    """Skip the retry backoff: the failed records are due now."""
    for entry in app.store.ledger.iter_records("contacts", status=RecordStatus.FAILED):
        app.store.ledger.save(entry.evolve(next_attempt_at=datetime.now(UTC)))


def post_update(host: FunctionHost, stack, contact_id: str, **attributes) -> requests.Response:
    """Change a row in Dynamics and deliver its webhook (no post image: the flow reads the row)."""
    stack.dataverse.update_row("contact", contact_id, attributes)
    version = str(stack.dataverse.get_row("contact", contact_id)["versionnumber"])
    target = entity("contact", contact_id, attributes=attributes, row_version=version)
    body = context("Update", "contact", contact_id, target=target, created_on=wcf_date(datetime.now(UTC)))
    body["OperationId"] = f"op-{contact_id}"
    return requests.post(
        f"{host.base_url}/api/webhook_d365?code={host.function_key}",
        data=to_wire(body),
        headers={"content-type": "application/json"},
        timeout=30,
    )


def get_status(host: FunctionHost, key: str | None) -> requests.Response:
    headers = {"x-functions-key": key} if key else {}
    return requests.get(f"{host.base_url}/api/status", headers=headers, timeout=30)


def test_status_matches_the_ledger_after_failures_and_retry_clears_the_dead_letters(stack, running):
    host, app = running
    ids = [i.lower() for i in stack.dataverse.seed_contacts(40, seed=31)]
    assert run_timer(host, app, "contacts_sync")["outcome"] == "succeeded"

    # Campaign answers 503 to everything: 6 changes fail, then die on their second attempt; 3 more fail
    # in the timer and 1 through the webhook.
    stack.campaign.faults.configure(FaultConfig(error_rate=1.0))
    for contact_id in ids[:6]:
        stack.dataverse.update_row("contact", contact_id, {"lastname": "Retried"})
    assert run_timer(host, app, "contacts_sync")["counts"]["failed"] == 6
    make_failed_records_due(app)
    for contact_id in ids[6:9]:
        stack.dataverse.update_row("contact", contact_id, {"lastname": "Pending"})
    report = run_timer(host, app, "contacts_sync")
    assert (report["counts"]["dead"], report["counts"]["failed"]) == (6, 3)
    webhook = post_update(host, stack, ids[9], lastname="ViaWebhook")
    assert webhook.status_code == 202 and webhook.json()["outcome"] == "failed"

    ledger = app.store.ledger.count_by_status("contacts")
    assert (ledger["synced"], ledger["failed"], ledger["dead"]) == (30, 4, 6)
    code, out = cli(app, "status", "--json")
    status = json.loads(out)
    flow = status["flows"]["contacts_sync"]
    assert code == WARNINGS and not status["healthy"]
    assert flow["records"]["contacts"] == ledger
    assert (flow["dead_letters"], flow["backlog"]["retries_waiting"], flow["state"]) == (6, 4, "degraded")
    assert (
        flow["last_run"]["outcome"] == "partial"
        and flow["streams"]["contacts"]["mode"] == "following changes"
    )
    assert status["problems"][:2] == [
        "contacts_sync: 4 record(s) failing (retried with backoff)",
        "contacts_sync: 6 dead letter(s) waiting for an operator",
    ]
    # Campaign's event journal answers 503 too: the status still answers, the lag unknown and said so.
    assert len(status["problems"]) == 3
    assert status["problems"][2].startswith("events_push: journal lag unknown: [io-events 50")
    assert status["flows"]["events_push"]["backlog"]["journal_lag_seconds"] is None

    # The endpoint answers the same, to the master key only.
    assert get_status(host, None).status_code == 401
    assert get_status(host, host.function_key).status_code == 401
    answer = get_status(host, host.master_key)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    assert answer.json()["flows"]["contacts_sync"]["records"]["contacts"] == ledger
    backlog = answer.json()["flows"]["contacts_sync"]["backlog"]["tables"]["contacts"]
    assert backlog == flow["backlog"]["tables"]["contacts"] | {"oldest_unapplied_seconds": ANY}
    assert (backlog["failed"], backlog["dead"]) == (4, 6)
    assert answer.json()["problems"][:2] == status["problems"][:2]
    assert answer.json()["problems"][2].startswith("events_push: journal lag unknown: [io-events 50")

    code, out = cli(app, "deadletters", "list", "--json")
    letters = json.loads(out)
    assert code == OK and sorted(letter["record_id"] for letter in letters) == sorted(ids[:6])
    assert all(
        letter["attempt_count"] == 1 and "[campaign 50" in letter["error"]["message"] for letter in letters
    )

    # Retrying before the cause is fixed keeps the letters; after the fix it clears them.
    code, out = cli(app, "deadletters", "retry", "--id", ids[0])
    assert code == WARNINGS and "1 retried: 0 fixed and removed, 1 kept." in out
    stack.campaign.faults.configure(FaultConfig())
    code, out = cli(app, "deadletters", "retry")
    assert code == OK and out.splitlines()[-1] == "6 retried: 6 fixed and removed, 0 kept."
    assert app.store.deadletters.count() == 0
    assert {p["lastName"] for p in stack.campaign.snapshot("profile") if p["externalId"] in ids[:6]} == {
        "Retried"
    }

    make_failed_records_due(app)
    run_timer(host, app, "contacts_sync")
    healthy = get_status(host, host.master_key).json()
    counts = healthy["flows"]["contacts_sync"]["records"]["contacts"]
    assert healthy["healthy"] and (counts["synced"], counts["failed"], counts["dead"]) == (40, 0, 0)
    # Rejected calls (no key, a function key) never reached the status function.
    assert [host.invocations[name] for name in ("contacts_sync", "webhook_d365", "status")] == [4, 1, 2]


def test_status_text_is_a_short_table_per_flow(stack, running):
    host, app = running
    stack.dataverse.seed_contacts(12, seed=32)
    run_timer(host, app, "contacts_sync")

    code, out = cli(app, "status")

    assert code == OK
    lines = out.splitlines()
    assert lines[0].startswith("Integration status at ") and lines[0].endswith(" UTC: healthy")
    header = lines[2].split()
    assert header[:2] == ["FLOW", "STATE"] and header[-2:] == ["DEAD", "LETTERS"]
    assert lines[3].split()[:2] == ["contacts_sync", "ok"] and "succeeded" in lines[3]
    assert lines[4].split()[:3] == ["events_push", "never", "run"]
    contacts = next(line for line in lines if line.startswith("  contacts "))
    assert contacts.split()[-5:] == ["12", "0", "0", "0", "0"]
    assert "following changes" in contacts
    assert "Problems:" not in out


def test_a_rejected_record_is_listed_shown_and_retried_after_the_data_is_fixed(stack, make_app):
    stack.dataverse.seed_contacts(5, seed=33)
    bad = stack.dataverse.create_row(
        "contact", {"lastname": "Typo", "emailaddress1": "not-an-address"}
    ).lower()
    app = make_app(CONFIG)
    assert app.ingress.run().counts["dead"] == 1

    code, out = cli(app, "deadletters", "list")
    lines = out.splitlines()
    assert code == OK
    assert lines[0].split() == ["FLOW", "MAPPING", "RECORD", "ATTEMPTS", "LAST", "FAILED", "(UTC)", "ERROR"]
    assert lines[1].split()[:4] == ["contacts_sync", "contacts", bad, "1"]
    assert "Invalid email address 'not-an-address'" in lines[1]
    assert lines[2].startswith("1 dead letter(s). Details: `deadletters show <RECORD>`")

    code, out = cli(app, "deadletters", "show", bad.upper())
    lines = out.splitlines()
    assert code == OK
    assert lines[0] == f"Dead letter contacts_sync / contacts / {bad}"
    assert lines[3].startswith("  error         RequestRejectedError: [campaign 500 XTK-170006]")
    assert lines[4] == "  ledger now    dead"
    assert '"email": "not-an-address"' in out

    stack.dataverse.update_row("contact", bad, {"emailaddress1": "fixed@example.org"})
    code, out = cli(app, "deadletters", "retry", "--table", "contact")
    assert code == OK
    assert out.splitlines()[1].split() == ["contacts_sync", "contacts", bad, "created", "removed"]
    assert stack.campaign.find("profile", externalId=bad)[0]["email"] == "fixed@example.org"
    assert cli(app, "deadletters", "list") == (OK, "No dead letters.\n")
