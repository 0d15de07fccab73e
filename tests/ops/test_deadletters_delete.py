"""`deadletters delete`: the privacy purge of a record's dead letter (and its dead ledger row), confirmed
with --yes, logged without the record's data; the record still syncs if it comes back."""

from __future__ import annotations

import json
import logging

from shared.cli import FAILED, OK
from shared.store import RecordStatus
from tests.builders.sync_config import EMAIL, LAST_NAME, cli, contacts_mapping, sync_config

CONFIG = sync_config(contacts_mapping(LAST_NAME, EMAIL))
BAD_EMAIL = "jane.doe.at.example.org"


def rejected_record(stack, make_app):
    """An app whose run dead-lettered one contact (Campaign rejected its email address)."""
    stack.dataverse.seed_contacts(3, seed=81)
    bad = stack.dataverse.create_row("contact", {"lastname": "Doe", "emailaddress1": BAD_EMAIL}).lower()
    app = make_app(CONFIG)
    assert app.ingress.run().counts["dead"] == 1
    return app, bad


def test_delete_needs_yes_and_then_removes_the_letter_and_the_dead_ledger_row(stack, make_app, caplog):
    app, bad = rejected_record(stack, make_app)

    code, out = cli(app, "deadletters", "delete", bad)
    assert code == FAILED
    assert out.splitlines() == [
        f"Dead letter contacts_sync / contacts / {bad}",
        "Nothing deleted: add --yes to delete the letter(s) and the record's dead ledger row.",
    ]
    assert app.store.deadletters.count() == 1

    with caplog.at_level(logging.INFO, logger="shared.cli.deadletters"):
        code, out = cli(app, "deadletters", "delete", bad.upper(), "--yes")

    assert code == OK
    assert out.splitlines()[1].split() == ["contacts_sync", "contacts", bad, "deleted"]
    assert out.splitlines()[-1] == "1 dead letter(s) deleted."
    assert app.store.deadletters.count() == 0
    assert app.store.ledger.get("contacts", bad) is None
    (purge,) = [r for r in caplog.records if getattr(r, "event", None) == "ops.deadletter_purged"]
    assert (purge.flow, purge.mapping, purge.ledger, len(purge.record_hash)) == (
        "contacts_sync",
        "contacts",
        "deleted",
        16,
    )
    assert bad not in purge.getMessage() and BAD_EMAIL not in purge.getMessage()
    assert cli(app, "deadletters", "delete", bad, "--yes") == (FAILED, f"No dead letter for {bad}.\n")


def test_a_purged_record_that_changes_again_in_dynamics_syncs_as_new(stack, make_app):
    app, bad = rejected_record(stack, make_app)
    assert cli(app, "deadletters", "delete", bad, "--yes")[0] == OK

    stack.dataverse.update_row("contact", bad, {"emailaddress1": "fixed@example.org"})
    report = app.ingress.run()

    assert report.counts["created"] == 1 and report.counts["dead"] == 0
    assert stack.campaign.find("profile", externalId=bad)[0]["email"] == "fixed@example.org"
    assert app.store.ledger.get("contacts", bad).status == RecordStatus.SYNCED


def test_a_ledger_row_the_record_moved_on_from_is_kept(stack, make_app):
    app, bad = rejected_record(stack, make_app)
    # A writer synced the record after it died (its letter not yet cleared): the row is live sync state.
    entry = app.store.ledger.get("contacts", bad)
    app.store.ledger.save(entry.evolve(status=RecordStatus.SYNCED, error=None))

    code, out = cli(app, "deadletters", "delete", bad, "--yes", "--json")

    assert code == OK
    assert json.loads(out) == {
        "deleted": True,
        "letters": [
            {
                "flow": "contacts_sync",
                "mapping": "contacts",
                "record_id": bad,
                "ledger_row": "kept (synced: no field values)",
            }
        ],
    }
    assert app.store.deadletters.count() == 0
    assert app.store.ledger.get("contacts", bad).status == RecordStatus.SYNCED
