"""`python -m shared.cli d365 setup` against a bare Dataverse emulator: what it creates, that a second run
changes nothing, that a changed config updates in place, and that the webhook it registers delivers."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emulators.funchost import FunctionHost
from shared import cli
from shared.errors import NotFoundError
from shared.setup.activities import EVENT_ID_COLUMN
from shared.setup.webhook import ENDPOINT_NAME
from tests.builders.sync_config import EMAIL, FIRST_NAME, LAST_NAME, contacts_mapping, sync_config

ROOT = Path(__file__).resolve().parents[2]
ACTIVITY_TABLES = ("acs_emailsend", "acs_emailopen", "acs_emailclick", "acs_emailbounce")
CONTACT_FIELDS = [FIRST_NAME, LAST_NAME, EMAIL]
GADGET = {
    "name": "gadgets",
    "d365_table": "cr123_gadget",
    "acs_resource": "customResources/cusGadget",
    "key": {"d365": "cr123_gadgetid", "acs": "externalId"},
    "fields": [{"d365": "cr123_name", "acs": "name"}],
}


def config(*tables: dict, contact_fields: list[dict] = CONTACT_FIELDS) -> dict:
    return sync_config(contacts_mapping(*contact_fields), *tables)


def setup(app, *options: str) -> tuple[int, str]:
    """Run the command; answers its exit code and its output with runs of spaces collapsed."""
    out = io.StringIO()
    code = cli.main(["d365", "setup", *options], app=app, out=out)
    return code, "\n".join(" ".join(line.split()) for line in out.getvalue().splitlines())


def webhook_options(
    url: str = "https://acsd365.example.net/api/webhook_d365", key: str = "key-1"
) -> list[str]:
    return ["--webhook-url", url, f"--function-key={key}"]


def rows(stack, table: str) -> list[dict]:
    return list(stack.dataverse.rows(table))


@pytest.fixture
def gadget_table(stack):
    """A custom table without change tracking, as a customer's table often is."""
    stack.dataverse.define_table(
        "cr123_gadget", primary_name="cr123_name", change_tracking=False, attributes={"cr123_name": "String"}
    )


def test_a_dry_run_lists_what_it_would_do_and_changes_nothing(make_app, stack, gadget_table):
    app = make_app(config(GADGET))

    code, output = setup(app, "--dry-run", *webhook_options())

    assert code == 0
    assert "dry run" in output.splitlines()[0]
    for table in ACTIVITY_TABLES:
        assert f"would create table {table}" in output
    assert "would create key acs_emailclick.acs_eventid_key" in output
    assert "would enable change tracking on cr123_gadget" in output
    assert "ok change tracking on contact" in output
    assert f"would create webhook endpoint '{ENDPOINT_NAME}'" in output
    assert "would create step 'acsd365: Update of cr123_gadget'" in output
    assert "change(s) would be made" in output
    with pytest.raises(NotFoundError):
        app.dataverse.metadata.table_metadata("acs_emailopen")
    assert not app.dataverse.metadata.table_metadata("cr123_gadget").change_tracking_enabled
    assert rows(stack, "serviceendpoint") == []


def test_setup_creates_everything_on_a_bare_organisation_and_a_second_run_changes_nothing(
    make_app, stack, gadget_table
):
    app = make_app(config(GADGET))

    code, output = setup(app, *webhook_options())

    assert code == 0, output
    assert "Done:" in output
    metadata = app.dataverse.metadata
    for table in ACTIVITY_TABLES:
        definition = metadata.table_metadata(table)
        assert definition.is_activity and definition.primary_name == "subject"
        assert {EVENT_ID_COLUMN, "acs_campaignname", "acs_deliveryname", "acs_mirrorpageurl"} <= set(
            definition.attributes
        )
        (key,) = metadata.alternate_keys(table)
        assert key.key_attributes == (EVENT_ID_COLUMN,) and key.index_status == "Active"
        assert metadata.regarding_navigation_property(table) == f"regardingobjectid_contact_{table}"
    assert "acs_clickedurl" in metadata.table_metadata("acs_emailclick").attributes
    assert "acs_bouncereason" in metadata.table_metadata("acs_emailbounce").attributes
    assert metadata.table_metadata("cr123_gadget").change_tracking_enabled
    (endpoint,) = rows(stack, "serviceendpoint")
    assert (endpoint["name"], endpoint["contract"], endpoint["authtype"]) == (ENDPOINT_NAME, 8, 4)
    assert endpoint["url"] == "https://acsd365.example.net/api/webhook_d365"
    steps = {step["name"]: step for step in rows(stack, "sdkmessageprocessingstep")}
    assert sorted(steps) == sorted(
        f"acsd365: {message} of {table}"
        for message in ("Create", "Update", "Delete")
        for table in ("contact", "cr123_gadget")
    )
    assert all((s["mode"], s["stage"]) == (1, 40) for s in steps.values())
    update = steps["acsd365: Update of contact"]
    assert set(update["filteringattributes"].split(",")) == {
        "contactid",
        "firstname",
        "lastname",
        "emailaddress1",
    }
    images = rows(stack, "sdkmessageprocessingstepimage")
    assert len(images) == 4  # a post image for Create and Update of each table
    assert {i["sdkmessageprocessingstepid"] for i in images} == {
        steps[f"acsd365: {m} of {t}"]["sdkmessageprocessingstepid"]
        for m in ("Create", "Update")
        for t in ("contact", "cr123_gadget")
    }
    # The post images carry the version and modifiedon, so a delivery can be ordered without a read.
    contact_update = next(
        i for i in images if i["sdkmessageprocessingstepid"] == update["sdkmessageprocessingstepid"]
    )
    assert set(contact_update["attributes"].split(",")) == {
        "contactid",
        "firstname",
        "lastname",
        "emailaddress1",
        "versionnumber",
        "modifiedon",
    }

    again, second_output = setup(app, *webhook_options())

    assert again == 0
    assert "Nothing to change: Dynamics is already set up." in second_output
    assert "create" not in second_output and "update" not in second_output
    assert len(rows(stack, "sdkmessageprocessingstep")) == 6
    assert len(rows(stack, "sdkmessageprocessingstepimage")) == 4
    assert len(rows(stack, "serviceendpoint")) == 1


def test_a_rerun_after_config_and_key_changes_updates_in_place_and_removes_unmapped_steps(
    make_app, stack, gadget_table
):
    code, _ = setup(make_app(config(GADGET)), *webhook_options(key="key-1"))
    assert code == 0
    more_fields = [*CONTACT_FIELDS, {"d365": "telephone1", "acs": "phone"}]
    app = make_app(config(contact_fields=more_fields))

    # A rotated key that starts with "-" (Azure's generated keys may) is a value, not an option.
    code, output = setup(app, *webhook_options(key="-key-2"))

    assert code == 0, output
    assert f"update webhook endpoint '{ENDPOINT_NAME}'" in output
    assert "update step 'acsd365: Update of contact'" in output
    assert "update post image of 'acsd365: Create of contact'" in output
    assert "delete step 'acsd365: Update of cr123_gadget'" in output
    steps = {step["name"]: step for step in rows(stack, "sdkmessageprocessingstep")}
    assert sorted(steps) == [f"acsd365: {m} of contact" for m in ("Create", "Delete", "Update")]
    assert "telephone1" in steps["acsd365: Update of contact"]["filteringattributes"].split(",")
    assert len(rows(stack, "serviceendpoint")) == 1
    assert setup(app, *webhook_options(key="-key-2"))[1].endswith(
        "Nothing to change: Dynamics is already set up."
    )


def test_tables_the_setup_cannot_prepare_are_reported_as_warnings(make_app, stack):
    missing = {
        **GADGET,
        "name": "missing",
        "d365_table": "cr123_missing",
        "acs_resource": "customResources/cusX",
    }
    app = make_app(config(missing))

    code, output = setup(app, *webhook_options())

    assert code == 1
    assert "warning change tracking on cr123_missing — the table does not exist in Dynamics" in output
    assert "warning step 'acsd365: Update of cr123_missing'" in output
    assert output.rstrip().endswith("warning(s): see above.")


def test_without_a_webhook_url_the_registration_is_skipped_and_half_an_address_is_refused(make_app):
    app = make_app(config())

    code, output = setup(app)
    refused, refusal = setup(app, "--webhook-url", "https://acsd365.example.net/api/webhook_d365")

    assert code == 0
    assert "skip webhook registration" in output
    assert refused == 2
    assert "--webhook-url and --function-key go together" in refusal


def test_the_registered_webhook_delivers_a_contact_change_to_webhook_d365(function_app_env, stack, tmp_path):
    app = function_app_env(config())
    # A host serving only the function under test (the other function folders need no host here).
    (tmp_path / "webhook_d365").mkdir()
    shutil.copy(ROOT / "webhook_d365" / "function.json", tmp_path / "webhook_d365" / "function.json")
    with FunctionHost(tmp_path, run_timers=False) as host:
        out = io.StringIO()
        url = f"{host.base_url}/api/webhook_d365"
        code = cli.main(["d365", "setup", *webhook_options(url, host.function_key)], out=out)
        assert code == 0, out.getvalue()

        contact_id = stack.dataverse.create_row(
            "contact", {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"}
        )
        assert stack.dataverse.wait_for_deliveries(timeout=30)

    webhooks = stack.dataverse.stats()["webhooks"]
    assert (webhooks["delivered"], webhooks["failed"]) == (1, 0)
    assert host.invocations["webhook_d365"] == 1
    (profile,) = stack.campaign.find("profile", externalId=contact_id)
    assert (profile["firstName"], profile["lastName"], profile["email"]) == (
        "Ada",
        "Lovelace",
        "ada@example.com",
    )
    assert app.settings.d365_org_url == stack.dataverse.base_url


def test_the_cli_is_a_module_with_nested_commands_and_help_needs_no_settings():
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "d365", "--help"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "setup" in result.stdout
