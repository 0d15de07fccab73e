"""`validate-config`: settings, sync config and live checks against the stack, with readable output."""

from __future__ import annotations

import io

from shared.app import get_app
from shared.cli import FAILED, OK, main
from shared.settings import get_settings
from shared.setup.d365 import D365Setup
from tests.builders.sync_config import CITY, EMAIL, FIRST_NAME, GENDER, GENDER_LABELS, cli, contacts_mapping

CONTACTS = contacts_mapping(
    FIRST_NAME,
    EMAIL,
    {"d365": "birthdate", "acs": "birthDate", "type": "Date"},
    CITY,
    GENDER,
    replacements=GENDER_LABELS,
)
VEHICLES = {
    "name": "vehicles",
    "d365_table": "cr123_vehicle",
    "acs_resource": "profileAndServicesExt/cusVehicle",
    "key": {"d365": "cr123_vehicleid", "acs": "externalId"},
    "fields": [
        {"d365": "cr123_name", "acs": "vehicleName"},
        {"d365": "cr123_price", "acs": "price", "type": "Double"},
    ],
}
OPTOUT = {"direction": "bidirectional", "pairs": [{"d365": "donotemail", "acs": "blackListEmail"}]}


def validate(app) -> tuple[int, list[str]]:
    code, output = cli(app, "validate-config")
    return code, output.splitlines()


def test_a_complete_set_up_passes_every_check(stack, make_app):
    app = make_app({"tables": [CONTACTS, VEHICLES], "optout": OPTOUT})
    D365Setup(dataverse=app.dataverse, config=app.config).run()

    code, lines = validate(app)

    assert code == OK, "\n".join(lines)
    assert lines[0] == "Checking the configuration (nothing is changed)"
    assert lines[-1].startswith("Result: all ") and lines[-1].endswith(" checks passed.")
    areas = {line.split()[1] for line in lines[1:-1]}
    assert {
        "settings",
        "sync",
        "storage",
        "dynamics",
        "campaign",
        "events",
        "contacts",
        "vehicles",
        "opt-out",
    } <= areas
    assert (
        "  ok    contacts      filter byExternalId: key filter 'byExternalId' present, takes "
        "externalId_parameter" in lines
    )
    assert "  ok    dynamics      change tracking on cr123_vehicle" in lines


def test_missing_columns_fields_filters_tables_and_bad_types_each_fail_with_their_name(stack, make_app):
    stack.dataverse.define_table(
        "cr123_part", primary_id="cr123_partid", attributes={"cr123_name": "String"}, change_tracking=False
    )
    contacts = {
        **CONTACTS,
        "key": {"d365": "contactid", "acs": "externalId", "acs_filter": "byCrmId"},
        "fields": [
            {"d365": "firstname", "acs": "firstName"},
            {"d365": "cr123_shoesize", "acs": "lastName"},
            {"d365": "lastname", "acs": "cusNickname"},
            {"d365": "createdon", "acs": "email"},
            {"d365": "donotemail", "acs": "birthDate", "type": "Date"},
        ],
        "replacements": [],
    }
    parts = {
        "name": "parts",
        "d365_table": "cr123_part",
        "acs_resource": "customResources/cusPart",
        "key": {"d365": "cr123_partid", "acs": "externalId"},
        "fields": [{"d365": "cr123_name", "acs": "partName"}],
    }
    ghosts = {
        **parts,
        "name": "ghosts",
        "d365_table": "cr123_ghost",
        "acs_resource": "customResources/cusGhost",
    }
    app = make_app({"tables": [contacts, parts, ghosts]}, EVENTS_PUSH_ENABLED="false")

    code, lines = validate(app)

    assert code == FAILED
    assert [line[len("  FAIL  ") :] for line in lines if line.startswith("  FAIL")] == [
        "dynamics      change tracking on cr123_part needs `enable`: needed by the contacts_sync timer "
        "(cannot be turned off again); run `python -m shared.cli d365 setup`",
        "contacts      columns missing on Dynamics table 'contact': cr123_shoesize (→ lastName)",
        "contacts      donotemail is Boolean: it cannot be converted to Date",
        "contacts      field cusNickname: field 'cusNickname' missing on 'profileAndServicesExt/profile' "
        "(custom fields are named cus… and served only on profileAndServicesExt); add it, then publish",
        "contacts      filter byCrmId: key filter 'byCrmId' missing on 'profileAndServicesExt/profile': "
        "define it (parameter externalId_parameter), then publish",
        next(line[8:] for line in lines if line.startswith("  FAIL  parts         resource: Campaign")),
        "ghosts        Dynamics table 'cr123_ghost' does not exist",
        next(line[8:] for line in lines if line.startswith("  FAIL  ghosts        resource: Campaign")),
    ]
    # Each Campaign problem is followed by the screen and the guide's section that fix it.
    assert lines[lines.index(next(x for x in lines if "field cusNickname:" in x)) + 1].strip() == (
        "fix: Administration > Development > Custom resources > Profile (extend): fields, identification "
        "key, filter definition (docs/campaign-setup.md#3-extend-the-profile)"
    )
    assert [line[len("  WARN  ") :] for line in lines if line.startswith("  WARN")] == [
        "dynamics      change tracking on cr123_ghost: the table does not exist in Dynamics",
        # Without events_push, activity tables not set up are only a warning.
        "events        activity tables not ready: 4 table(s), 22 column(s), 4 key(s) to create in "
        "acs_emailbounce, acs_emailclick, acs_emailopen, acs_emailsend; run `python -m shared.cli d365 "
        "setup`",
        "contacts      createdon → email: a DateTime value into a Campaign string field",
    ]
    assert lines[-1].startswith("Result: 8 check(s) failed, 3 warning(s), of 20. Fix the failed checks")


def test_rejected_credentials_fail_and_skip_the_checks_that_need_them(stack, make_app):
    app = make_app(
        {"tables": [CONTACTS]}, D365_CLIENT_SECRET="wrong-secret", ACS_CLIENT_SECRET="wrong-secret"
    )

    code, lines = validate(app)

    assert code == FAILED
    assert [line.split()[1] for line in lines if line.startswith("  FAIL")] == ["dynamics", "campaign"]
    assert not any("wrong-secret" in line for line in lines)
    assert not any(line.split()[1] == "contacts" for line in lines[1:-1])


def test_invalid_settings_are_listed_before_anything_is_called(monkeypatch):
    monkeypatch.delenv("D365_ORG_URL")
    monkeypatch.setenv("D365_PAGE_SIZE", "9000")
    get_settings.cache_clear()
    get_app.cache_clear()
    try:
        out = io.StringIO()
        code = main(["validate-config"], out=out)
    finally:
        get_settings.cache_clear()
        get_app.cache_clear()
    lines = out.getvalue().splitlines()
    assert code == FAILED
    assert lines[1] == "  FAIL  settings      Invalid app settings (2 problem(s)):"
    assert lines[2].strip() == "- D365_ORG_URL: missing"
    assert lines[3].strip().startswith("- D365_PAGE_SIZE: Input should be less than or equal to 5000")
