"""`replay` and `checkpoint reset`: operator actions that make the next timer run start a table over."""

from __future__ import annotations

from shared.cli import FAILED, OK
from tests.builders.sync_config import EMAIL_AS_CREATED, FIRST_NAME, cli, contacts_mapping, sync_config

CONFIG = sync_config(contacts_mapping(FIRST_NAME, EMAIL_AS_CREATED))


def test_replay_rewrites_every_field_of_every_row_on_the_next_run(stack, make_app):
    ids = stack.dataverse.seed_contacts(30, seed=41)
    app = make_app(CONFIG)
    app.ingress.run()
    stack.dataverse.update_row("contact", ids[0], {"emailaddress1": "changed@example.org"})

    code, out = cli(app, "replay", "--table", "contact")

    assert code == OK
    assert out.startswith(
        "Replay of 'contacts' (contact → profileAndServicesExt/profile) requested: the next"
    )
    assert app.store.checkpoints.get("replay", "contacts").position == "requested"
    stack.campaign.reset_counters()
    report = app.ingress.run()
    assert stack.campaign.engine_calls["update"] == 30 and report.counts["updated"] == 30
    # The email does not apply updates, but a replay writes it.
    assert stack.campaign.find("profile", externalId=ids[0].lower())[0]["email"] == "changed@example.org"
    assert app.store.checkpoints.get("replay", "contacts").etag is None


def test_replay_of_a_table_over_the_limit_is_refused_with_the_reason(stack, make_app):
    stack.dataverse.seed_contacts(30, seed=42)
    app = make_app(CONFIG, REPLAY_MAX_ROWS="10")
    app.ingress.run()

    code, out = cli(app, "replay", "--table", "contacts")

    assert code == FAILED
    assert out.startswith(
        "refused: replay of 'contacts' refused: 30 rows ≥ REPLAY_MAX_ROWS (10); raise the setting"
    )
    assert app.store.checkpoints.get("replay", "contacts").etag is None


def test_checkpoint_reset_needs_yes_and_then_the_next_run_reads_the_table_again(stack, make_app):
    stack.dataverse.seed_contacts(20, seed=43)
    app = make_app(CONFIG)
    app.ingress.run()
    saved = app.store.checkpoints.get("contacts_sync", "contacts")

    code, out = cli(app, "checkpoint", "reset", "--flow", "contacts_sync", "--stream", "contacts")
    assert code == FAILED and out.splitlines()[-1] == "Nothing changed: add --yes to reset it."
    assert "re-reads every row of this mapping from Dynamics" in out
    assert app.store.checkpoints.get("contacts_sync", "contacts").etag == saved.etag

    code, out = cli(app, "checkpoint", "reset", "--flow", "contacts_sync", "--stream", "contacts", "--yes")
    assert code == OK and out.splitlines()[-1].startswith(
        "Reset: the next contacts_sync run re-reads every row"
    )
    assert app.store.checkpoints.get("contacts_sync", "contacts").etag is None
    stack.campaign.reset_counters()
    assert app.ingress.run().counts["unchanged"] == 20
    assert stack.campaign.engine_calls["insert"] + stack.campaign.engine_calls["update"] == 0


def test_resetting_an_unknown_checkpoint_names_the_saved_ones(stack, make_app):
    stack.dataverse.seed_contacts(3, seed=44)
    app = make_app(CONFIG)
    app.ingress.run()

    code, out = cli(app, "checkpoint", "reset", "--flow", "contacts_sync", "--stream", "contact", "--yes")

    assert code == FAILED
    assert out.splitlines() == [
        "No checkpoint contacts_sync/contact; nothing to reset.",
        "Saved checkpoints: --flow contacts_sync --stream contacts",
    ]
