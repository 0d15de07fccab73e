"""`dry-run`: what a sync would write to Campaign, as a diff against Campaign's records, writing nothing."""

from __future__ import annotations

import json

import pytest

from shared.cli import OK
from tests.builders.sync_config import NOWHERE, cli, filtered_contacts_mapping, sync_config

CONFIG = sync_config(filtered_contacts_mapping())


def durable_state(app) -> tuple[dict, list]:
    """The ledger rows (with their etags) and the checkpoints: a write to either changes this."""
    ledger = {
        r.source_id: (r.status, r.content_hash, r.etag) for r in app.store.ledger.iter_records("contacts")
    }
    checkpoints = sorted((c.flow, c.stream, c.etag) for c in app.store.checkpoints.list())
    return ledger, checkpoints


@pytest.fixture
def synced(stack, make_app):
    """60 contacts synced to Campaign (one already outside the filter), then changed in several ways."""
    dv = stack.dataverse
    ids = dv.seed_contacts(60, seed=21)
    dv.update_row("contact", ids[5], {"address1_city": NOWHERE})
    app = make_app(CONFIG)
    assert app.ingress.run().outcome == "succeeded"
    dv.update_row("contact", ids[0], {"firstname": "Zoë", "emailaddress1": "zoe.new@example.org"})
    dv.update_row("contact", ids[1], {"address1_city": NOWHERE})
    dv.delete_row("contact", ids[2])
    new_id = dv.create_row(
        "contact",
        {
            "firstname": "Nina",
            "lastname": "New",
            "emailaddress1": "nina.new@example.org",
            "address1_city": "Lyon",
        },
    ).lower()
    drifted = stack.campaign.find("profile", externalId=ids[3].lower())[0]["PKey"]
    stack.campaign.update_profile(drifted, {"lastName": "Edited in Campaign"})
    return app, [i.lower() for i in ids], new_id


def test_dry_run_diffs_creates_updates_deletes_and_filter_exits_and_writes_nothing(stack, synced):
    app, ids, new_id = synced
    stack.campaign.reset_counters()
    state_before = durable_state(app)
    wanted = [ids[0], ids[1], ids[2], new_id, ids[3], ids[4], ids[5]]

    code, out = cli(app, "dry-run", "--table", "contact", "--json", *(f"--id={i}" for i in wanted))

    assert code == OK
    calls = stack.campaign.engine_calls
    assert (calls["insert"], calls["update"], calls["delete"]) == (0, 0, 0)
    assert durable_state(app) == state_before
    result = json.loads(out)
    plans = {plan["record_id"]: plan for plan in result["records"]}
    assert [plan["record_id"] for plan in result["records"]] == wanted

    first_name = stack.campaign.find("profile", externalId=ids[0])[0]["firstName"]
    assert plans[ids[0]]["action"] == "update"
    # The email changed too, but its mapping does not apply updates: a sync leaves it alone.
    assert plans[ids[0]]["changes"] == [{"field": "firstName", "old": first_name, "new": "Zoë"}]
    assert (plans[ids[1]]["action"], plans[ids[1]]["reason"]) == ("delete", "left the filter")
    assert (plans[ids[2]]["action"], plans[ids[2]]["reason"]) == ("delete", "deleted in Dynamics")
    created = {c["field"]: (c["old"], c["new"]) for c in plans[new_id]["changes"]}
    assert plans[new_id]["action"] == "create"
    assert created["externalId"] == (None, new_id)
    assert created["firstName"] == (None, "Nina") and created["location.city"] == (None, "Lyon")
    assert created["email"] == (None, "nina.new@example.org")
    # Changed in Campaign only: the sync would not write it, and the dry run says a replay would.
    assert plans[ids[3]]["action"] == "unchanged"
    assert "replay" in plans[ids[3]]["reason"]
    assert plans[ids[3]]["changes"] == [
        {
            "field": "lastName",
            "old": "Edited in Campaign",
            "new": stack.dataverse.get_row("contact", ids[3])["lastname"],
        }
    ]
    assert (plans[ids[4]]["action"], plans[ids[4]]["changes"]) == ("unchanged", [])
    assert plans[ids[5]]["action"] == "excluded"
    assert result["summary"] == {"create": 1, "update": 1, "delete": 2, "unchanged": 2, "excluded": 1}

    # The real sync then does exactly what the dry run announced.
    app.ingress.run()
    calls = stack.campaign.engine_calls
    assert (calls["insert"], calls["update"], calls["delete"]) == (1, 1, 2)
    assert stack.campaign.find("profile", externalId=ids[0])[0]["firstName"] == "Zoë"


def test_dry_run_text_lists_every_row_with_its_field_changes_and_a_summary(stack, synced):
    app, ids, _ = synced
    stack.campaign.reset_counters()

    code, out = cli(app, "dry-run", "--table", "contacts", "--limit", "100")

    assert code == OK
    lines = out.splitlines()
    assert lines[0].startswith("Dry run of mapping 'contacts': Dynamics contact → Campaign")
    assert lines[1].split() == ["RECORD", "ACTION", "WHY"]
    assert any(line.startswith(f"  {ids[0]}  update") for line in lines)
    assert '      firstName: "' in out and '" → "Zoë"' in out
    # 60 seeded - 1 deleted + 1 created rows; deletions of missing rows need --id.
    assert lines[-1] == "60 record(s): 1 create, 1 update, 1 delete, 56 unchanged, 1 excluded."
    assert stack.campaign.engine_calls["insert"] + stack.campaign.engine_calls["update"] == 0


def test_dry_run_as_a_replay_shows_fields_that_do_not_apply_updates(stack, synced):
    app, ids, _ = synced
    code, out = cli(app, "dry-run", "--table", "contact", "--id", ids[0], "--replay", "--json")
    plan = json.loads(out)["records"][0]
    assert code == OK and plan["action"] == "update"
    assert {c["field"]: c["new"] for c in plan["changes"]} == {
        "firstName": "Zoë",
        "email": "zoe.new@example.org",
    }


def test_dry_run_refuses_an_id_that_is_not_a_guid_and_an_unknown_table(make_app, stack):
    app = make_app(CONFIG)
    code, out = cli(app, "dry-run", "--table", "contact", "--id", "42")
    assert code == 2 and "not a row id (GUID): 42" in out
    code, out = cli(app, "dry-run", "--table", "account")
    assert code == 2 and "no table mapping named or reading 'account'; mapped: contacts (contact)" in out
