"""`resync <mapping> <id>`: one record read from Dynamics now and applied through the normal write path
(the ledger, the one-writer lease), or shown as a diff with `--dry-run`."""

from __future__ import annotations

import json

from shared.cli import FAILED, OK
from shared.store import RecordStatus
from tests.builders.sync_config import EMAIL, FIRST_NAME, LAST_NAME, cli, contacts_mapping, sync_config

CONFIG = sync_config(contacts_mapping(FIRST_NAME, LAST_NAME, EMAIL))


def synced(stack, make_app, n: int, seed: int):
    ids = [i.lower() for i in stack.dataverse.seed_contacts(n, seed=seed)]
    app = make_app(CONFIG)
    app.ingress.run()
    stack.campaign.reset_counters()
    return app, ids


def profile(stack, contact_id: str) -> dict:
    (found,) = stack.campaign.find("profile", externalId=contact_id)
    return found


def test_resync_applies_a_changed_row_with_one_campaign_update_and_records_it(stack, make_app):
    app, ids = synced(stack, make_app, 10, seed=71)
    stack.dataverse.update_row("contact", ids[3], {"lastname": "Resynced"})
    version = int(stack.dataverse.get_row("contact", ids[3])["versionnumber"])

    code, out = cli(app, "resync", "contacts", ids[3].upper())

    assert code == OK
    assert out.splitlines() == [
        f"Resync of 'contacts' record {ids[3]} (Dynamics contact → Campaign profileAndServicesExt/profile): "
        "updated, Campaign updated",
        "  ledger now: synced",
    ]
    assert stack.campaign.engine_calls["update"] == 1 and stack.campaign.engine_calls["insert"] == 0
    assert profile(stack, ids[3])["lastName"] == "Resynced"
    entry = app.store.ledger.get("contacts", ids[3])
    assert (entry.status, entry.source_version) == (RecordStatus.SYNCED, version)
    # The timer finds the change applied: nothing more is written.
    stack.campaign.reset_counters()
    assert app.ingress.run().counts["updated"] == 0
    assert stack.campaign.engine_calls["update"] == 0


def test_resync_of_an_unchanged_row_makes_no_campaign_call(stack, make_app):
    app, ids = synced(stack, make_app, 5, seed=72)
    before = app.store.ledger.get("contacts", ids[0])

    code, out = cli(app, "resync", "contact", ids[0], "--json")

    assert code == OK
    assert json.loads(out) == {
        "mapping": "contacts",
        "record_id": ids[0],
        "outcome": "unchanged",
        "ledger": {"status": "synced", "version": before.source_version, "campaign_key": before.target_key},
    }
    assert sum(stack.campaign.engine_calls.values()) == 0
    assert app.store.ledger.get("contacts", ids[0]).etag == before.etag


def test_resync_dry_run_shows_the_field_diff_and_writes_nothing(stack, make_app):
    app, ids = synced(stack, make_app, 5, seed=73)
    old_name = profile(stack, ids[1])["lastName"]
    stack.dataverse.update_row("contact", ids[1], {"lastname": "Planned"})
    before = app.store.ledger.get("contacts", ids[1])

    code, out = cli(app, "resync", "contacts", ids[1], "--dry-run")

    assert code == OK
    assert out.splitlines() == [
        f"Dry run of a resync of 'contacts' record {ids[1]}: update (changed in Dynamics). "
        "Nothing is written.",
        f'  lastName: "{old_name}" → "Planned"',
    ]
    code, out = cli(app, "resync", "contacts", ids[1], "--dry-run", "--json")
    plan = json.loads(out)
    assert (code, plan["action"], plan["dry_run"]) == (OK, "update", True)
    assert plan["changes"] == [{"field": "lastName", "old": old_name, "new": "Planned"}]
    calls = stack.campaign.engine_calls
    assert calls["insert"] + calls["update"] + calls["delete"] == 0
    assert profile(stack, ids[1])["lastName"] == old_name
    assert app.store.ledger.get("contacts", ids[1]).etag == before.etag


def test_resync_force_rewrites_a_record_changed_in_campaign_behind_the_ledger(stack, make_app):
    app, ids = synced(stack, make_app, 5, seed=74)
    expected = profile(stack, ids[2])["lastName"]
    stack.campaign.update_profile(profile(stack, ids[2])["PKey"], {"lastName": "Edited in Campaign"})

    # The ledger says Campaign holds this content: a plain resync trusts it, --force does not.
    assert cli(app, "resync", "contacts", ids[2])[1].split(": ")[1].startswith("unchanged")
    code, out = cli(app, "resync", "contacts", ids[2], "--force")

    assert code == OK and "updated, Campaign updated" in out
    assert profile(stack, ids[2])["lastName"] == expected


def test_resync_creates_a_new_row_and_deletes_a_row_gone_from_dynamics(stack, make_app):
    app = make_app(sync_config(contacts_mapping(FIRST_NAME, LAST_NAME, EMAIL, apply_deletes=True)))
    ids = [i.lower() for i in stack.dataverse.seed_contacts(3, seed=75)]

    assert "created, created in Campaign" in cli(app, "resync", "contacts", ids[0])[1]
    assert profile(stack, ids[0])["externalId"] == ids[0]
    stack.dataverse.delete_row("contact", ids[0])
    code, out = cli(app, "resync", "contacts", ids[0])

    assert code == OK and "deleted, gone from Dynamics: deleted from Campaign" in out
    assert stack.campaign.find("profile", externalId=ids[0]) == []
    assert app.store.ledger.get("contacts", ids[0]).status == RecordStatus.DELETED


def test_resync_of_a_rejected_row_fails_with_a_dead_letter(stack, make_app):
    app, _ = synced(stack, make_app, 2, seed=76)
    bad = stack.dataverse.create_row("contact", {"lastname": "Typo", "emailaddress1": "not-an-address"})

    code, out = cli(app, "resync", "contacts", bad)

    assert code == FAILED
    assert "dead, rejected: a dead letter (`deadletters show <RECORD>`)" in out
    assert app.store.deadletters.get("contacts_sync", "contacts", bad.lower()) is not None


def test_resync_refuses_an_id_that_is_not_a_guid_and_an_unknown_mapping(stack, make_app):
    app = make_app(CONFIG)

    assert cli(app, "resync", "contacts", "42") == (FAILED, "failed: not a row id (GUID): 42\n")
    code, out = cli(app, "resync", "leads", "00000000-0000-0000-0000-000000000001", "--json")
    assert code == FAILED
    assert json.loads(out) == {
        "failed": "no table mapping named or reading 'leads'; mapped: contacts (contact)"
    }
