"""The backlog in `status`: Dynamics rows changed since the checkpoint (a `$count`, "≥ 5000" past
Dataverse's limit), the oldest unapplied change, the journal lag; best effort while a service is down."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from emulators.campaign.seed import build_events
from emulators.common import FaultConfig
from shared.cli import WARNINGS
from shared.d365.odata import MAX_PAGE_SIZE
from shared.setup.d365 import D365Setup
from tests.builders.sync_config import LAST_NAME, cli, contacts_mapping, sync_config

CONFIG = sync_config(contacts_mapping(LAST_NAME))


def status_of(app) -> tuple[int, dict]:
    code, out = cli(app, "status", "--json")
    return code, json.loads(out)


def table_backlog(app) -> dict:
    return status_of(app)[1]["flows"]["contacts_sync"]["backlog"]["tables"]["contacts"]


def next_second() -> None:
    """`modifiedon` has one-second precision: a change made in the second the checkpoint was saved is
    not counted, so the changes of a test are made in a later second."""
    time.sleep(1.05 - datetime.now(UTC).microsecond / 1e6)


def test_backlog_grows_with_unapplied_changes_and_falls_after_a_run(stack, make_app):
    ids = stack.dataverse.seed_contacts(20, seed=61)
    app = make_app(CONFIG)
    app.ingress.run()
    assert table_backlog(app)["changes_waiting"] == 0
    next_second()

    for contact_id in ids[:3]:
        stack.dataverse.update_row("contact", contact_id, {"lastname": "Waiting"})
    first = table_backlog(app)
    for contact_id in ids[3:8]:
        stack.dataverse.update_row("contact", contact_id, {"lastname": "Waiting"})
    second = table_backlog(app)

    assert (first["changes_waiting"], second["changes_waiting"]) == (3, 8)
    assert second["changes_waiting_more"] is False and second["failed"] == second["dead"] == 0
    assert 0 <= second["oldest_unapplied_seconds"] < 60
    assert second["oldest_unapplied_at"] <= datetime.now(UTC).isoformat()
    assert app.ingress.run().counts["updated"] == 8
    after = table_backlog(app)
    assert (after["changes_waiting"], after["oldest_unapplied_seconds"]) == (0, None)


def test_before_the_first_load_the_whole_table_waits_and_past_5000_rows_it_says_at_least(stack, make_app):
    stack.dataverse.seed_contacts(40, seed=62)
    app = make_app(CONFIG)
    assert table_backlog(app)["changes_waiting"] == 40

    stack.dataverse.seed_contacts(MAX_PAGE_SIZE, seed=63)
    backlog = table_backlog(app)
    assert (backlog["changes_waiting"], backlog["changes_waiting_more"]) == (MAX_PAGE_SIZE, True)
    assert backlog["changes_since"] is None  # no checkpoint yet: every row

    _, out = cli(app, "status")
    row = next(line for line in out.splitlines() if line.startswith("  contacts ") and "≥" in line)
    assert row.split()[1:3] == ["≥", str(MAX_PAGE_SIZE)]


def test_the_oldest_unapplied_change_is_the_first_failure_of_a_record_waiting_for_a_retry(stack, make_app):
    ids = stack.dataverse.seed_contacts(10, seed=64)
    app = make_app(CONFIG, HTTP_MAX_RETRIES="0")
    app.ingress.run()
    stack.campaign.faults.configure(FaultConfig(error_rate=1.0))
    stack.dataverse.update_row("contact", ids[0], {"lastname": "Failing"})
    assert app.ingress.run().counts["failed"] == 1
    first_failed_at = app.store.ledger.get("contacts", ids[0].lower()).first_failed_at
    time.sleep(1.1)

    backlog = table_backlog(app)

    # The change was read (the checkpoint moved past it): it waits in the ledger, not in Dynamics.
    assert (backlog["changes_waiting"], backlog["failed"]) == (0, 1)
    assert backlog["oldest_unapplied_at"] == first_failed_at.isoformat()
    assert backlog["oldest_unapplied_seconds"] >= 1


def test_status_answers_while_dynamics_is_down_with_the_counts_unknown_and_one_problem_line(stack, make_app):
    accounts = {
        "name": "accounts",
        "d365_table": "account",
        "acs_resource": "profileAndServicesExt/cusAccount",
        "key": {"d365": "accountid", "acs": "accountId", "acs_filter": "byAccountId"},
        "fields": [{"d365": "name", "acs": "name"}],
    }
    app = make_app(sync_config(contacts_mapping(LAST_NAME), accounts), HTTP_MAX_RETRIES="3")
    stack.dataverse.seed_contacts(5, seed=65)
    stack.dataverse.faults.configure(FaultConfig(error_rate=1.0))

    code, status = status_of(app)

    tables = status["flows"]["contacts_sync"]["backlog"]["tables"]
    assert code == WARNINGS and not status["healthy"]
    assert [t["changes_waiting"] for t in tables.values()] == [None, None]
    assert len(status["problems"]) == 1
    assert status["problems"][0].startswith(
        "contacts_sync: changes waiting in Dynamics unknown: [dataverse 50"
    )
    # One request, not retried, and none for the second mapping: the status answers at once.
    assert stack.dataverse.faults.counts["error"] == 1

    stack.dataverse.faults.configure(FaultConfig())
    code, status = status_of(app)
    tables = status["flows"]["contacts_sync"]["backlog"]["tables"]
    assert status["problems"] == [] and tables["contacts"]["changes_waiting"] == 5


def test_the_journal_lag_is_the_age_of_the_oldest_unread_event_and_zero_once_read(stack, make_app):
    ids = [i.lower() for i in stack.dataverse.seed_contacts(5, seed=66)]
    app = make_app(CONFIG, EVENTS_PUSH_ENABLED="true")
    D365Setup(dataverse=app.dataverse, config=app.config).run()
    app.ingress.run()
    profiles = [
        {"PKey": p["PKey"], "externalId": p["externalId"], "email": p["email"]}
        for p in stack.campaign.snapshot("profile")
        if p["externalId"] in ids
    ]
    two_minutes_ago = stack.campaign.clock.now() - 120
    stack.campaign.publish_events(
        build_events(profiles, 6, tenant=stack.campaign.tenant, now=two_minutes_ago, seed=5)
    )

    events = status_of(app)[1]["flows"]["events_push"]["backlog"]
    assert events["journal_caught_up"] is False
    assert 120 <= events["journal_lag_seconds"] < 600
    assert "  Journal lag: 2m" in cli(app, "status")[1]

    assert app.events.run().counts["events_read"] == 6
    events = status_of(app)[1]["flows"]["events_push"]["backlog"]
    assert (events["journal_caught_up"], events["journal_lag_seconds"]) == (True, 0)
