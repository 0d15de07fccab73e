"""`acs check` against the Campaign emulator's metadata (the documented `resourceType` and filter shapes):
the shipped config passes, and each piece an admin can skip (filter, field, key, link, opt-out filter,
journal) is named with its fix when the emulator's metadata lacks it. Also: the emulator's metadata, links
in the sync config, and a GET by PKey in both documented shapes."""

from __future__ import annotations

import json

import pytest
import requests

from emulators.stack import VEHICLE_MAPPING, VEHICLE_RESOURCE
from shared.cli import FAILED, OK, WARNINGS
from shared.mapping.model import SyncConfigError, parse_sync_config
from tests.builders.sync_config import cli
from tests.flows import conftest as flows

stack, make_app = flows.stack, flows.make_app  # the local stack's fixtures, shared with the flow tests

SHIPPED = None  # make_app(None): the shipped sync_config.json
CONTACTS_AND_VEHICLES = {
    "tables": [
        {
            "name": "contacts",
            "d365_table": "contact",
            "acs_resource": "profileAndServicesExt/profile",
            "fields": [
                {"d365": "firstname", "acs": "firstName"},
                {"d365": "address1_city", "acs": "location.city"},
            ],
        },
        VEHICLE_MAPPING,
    ],
    "optout": {"direction": "bidirectional", "pairs": [{"d365": "donotemail", "acs": "blackListEmail"}]},
}


def check(app, *options: str) -> tuple[int, list[str]]:
    code, output = cli(app, "acs", "check", *options)
    return code, output.splitlines()


def rows(lines: list[str]) -> list[list[str]]:
    """The table's rows as [LEVEL, AREA, CHECK, DETAIL], cut at the header's column starts."""
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["LEVEL"])
    starts = [lines[header].index(name) for name in ("LEVEL", "AREA", "CHECK", "DETAIL")]
    table = []
    for line in lines[header + 1 :]:
        if not line.startswith("  ") or line[2:3] == " ":
            break
        table.append([line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)])
    return table


def problems(lines: list[str]) -> list[str]:
    """The FAIL/WARN rows as `LEVEL AREA CHECK` (the detail left out)."""
    return [" ".join(row[:3]) for row in rows(lines) if row[0] in ("FAIL", "WARN")]


def fixes(lines: list[str]) -> list[str]:
    return lines[lines.index("To fix:") + 1 :] if "To fix:" in lines else []


def test_the_shipped_config_passes_against_the_emulator(stack, make_app):
    code, lines = check(make_app(SHIPPED))

    assert code == OK, "\n".join(lines)
    assert lines[-1].startswith("Result: 0 problem(s), 0 warning(s), ")
    checked = {(area, check.split()[0]) for level, area, check, _ in rows(lines) if level == "ok"}
    assert {
        ("contacts", "resource"),
        ("contacts", "fields"),
        ("contacts", "filter"),
        ("opt-out", "fields"),
        ("opt-out", "filter"),
        ("journal", "journal"),
    } <= checked


def test_json_output_is_one_document_with_every_finding(stack, make_app):
    code, output = cli(make_app(CONTACTS_AND_VEHICLES), "acs", "check", "--json")

    document = json.loads(output)
    assert code == OK
    assert document["result"] == "ok"
    assert document["counts"]["failed"] == 0
    assert {"area": "vehicles", "check": "link contact", "level": "ok"}.items() <= next(
        f for f in document["findings"] if f["check"] == "link contact"
    ).items()


@pytest.mark.parametrize(
    ("resource", "removed", "expected", "guide"),
    [
        ("profile", {"filter": "byExternalId"}, "FAIL contacts filter byExternalId", "#3-extend-the-profile"),
        ("profile", {"field": "firstName"}, "FAIL contacts field firstName", "#3-extend-the-profile"),
        ("profile", {"field": "location.city"}, "FAIL contacts field location.city", "#3-extend-the-profile"),
        ("profile", {"key": True}, "FAIL contacts key externalId", "#3-extend-the-profile"),
        (
            "profile",
            {"filter": "byLastModifiedSince"},
            "FAIL opt-out filter byLastModifiedSince",
            "#4-the-bylastmodifiedsince-filter-opt-out-sync",
        ),
        (
            "profile",
            {"field": "blackListEmailLastModified"},
            "FAIL opt-out field blackListEmailLastModified",
            "#4-the-bylastmodifiedsince-filter-opt-out-sync",
        ),
        ("cusVehicle", {"link": "contact"}, "FAIL vehicles link contact", "#links-to-the-profile"),
        ("cusVehicle", {"key": True}, "FAIL vehicles key externalId", "#5-custom-resources"),
        ("cusVehicle", {"field": "price"}, "FAIL vehicles field price", "#5-custom-resources"),
        (
            "cusVehicle",
            {"filter": "byExternalId"},
            "FAIL vehicles filter byExternalId",
            "#5-custom-resources",
        ),
    ],
)
def test_each_piece_removed_from_the_metadata_is_named_with_its_fix(
    stack, make_app, resource, removed, expected, guide
):
    app = make_app(CONTACTS_AND_VEHICLES)
    assert check(app)[0] == OK
    stack.campaign.remove_from_metadata(resource, **removed)

    code, lines = check(app)

    assert code == FAILED
    assert problems(lines) == [expected]
    area, what = expected.split(None, 2)[1:]
    assert next(fix for fix in fixes(lines) if fix.startswith(f"  {area} {what}: ")).endswith(
        f"(docs/campaign-setup.md{guide})"
    )
    stack.campaign.restore_metadata()
    assert check(app)[0] == OK


def test_the_admin_endpoint_breaks_the_metadata_for_a_process_without_the_emulator_object(stack, make_app):
    admin = f"{stack.campaign.base_url}/_emulator/metadata"
    assert requests.post(f"{admin}/remove", json={"resource": "profile", "field": "lastName"}, timeout=5).ok
    unknown = requests.post(f"{admin}/remove", json={"resource": "cusNothing", "field": "x"}, timeout=5)
    config = {
        "tables": [
            {**CONTACTS_AND_VEHICLES["tables"][0], "fields": [{"d365": "lastname", "acs": "lastName"}]}
        ]
    }

    code, lines = check(make_app(config, OPTOUT_DIRECTION="disabled"))

    assert unknown.status_code == 400
    assert code == FAILED
    assert problems(lines) == ["FAIL contacts field lastName"]
    assert requests.post(f"{admin}/restore", timeout=5).ok
    assert check(make_app(config, OPTOUT_DIRECTION="disabled"))[0] == OK


def test_a_missing_resource_and_a_field_of_the_wrong_type_are_problems(stack, make_app):
    config = {
        "tables": [
            {
                **CONTACTS_AND_VEHICLES["tables"][0],
                "fields": [
                    {"d365": "birthdate", "acs": "blackListFax", "type": "Date"},
                    {"d365": "numberofchildren", "acs": "firstName", "type": "Integer"},
                ],
            },
            {
                **VEHICLE_MAPPING,
                "name": "parts",
                "d365_table": "cr123_part",
                "acs_resource": "customResources/cusPart",
            },
        ]
    }

    code, lines = check(make_app(config, OPTOUT_DIRECTION="disabled"))

    assert code == FAILED
    assert problems(lines) == [
        "FAIL contacts field blackListFax",
        "WARN contacts field firstName",
        "FAIL parts resource",
    ]
    assert any(
        "'blackListFax' is a Campaign boolean field; the mapping sends a Date" in line for line in lines
    )


@pytest.mark.parametrize(
    "stack",
    [
        {
            "campaign_options": {
                "custom_resources": {
                    "cusVehicle": {**VEHICLE_RESOURCE["cusVehicle"], "filters": {"externalId": "externalId"}}
                }
            }
        }
    ],
    indirect=True,
)
def test_a_campaign_v8_filter_name_without_the_by_prefix_is_found_and_named(stack, make_app):
    code, lines = check(make_app(CONTACTS_AND_VEHICLES))

    assert code == WARNINGS
    assert problems(lines) == ["WARN vehicles filter byExternalId"]
    assert any(
        "found as 'externalId' (Campaign v8 names filters without the by prefix)" in line
        and "'Filter name in REST API' to byExternalId" in line
        for line in lines
    )


@pytest.mark.parametrize(
    "stack",
    [
        {
            "campaign_options": {
                "custom_resources": {
                    "cusVehicle": {
                        **VEHICLE_RESOURCE["cusVehicle"],
                        "filters": {"byExternalId": "vehicleNumber"},
                    }
                }
            }
        }
    ],
    indirect=True,
)
def test_a_key_filter_with_another_parameter_is_a_problem_naming_the_parameter(stack, make_app):
    code, lines = check(make_app(CONTACTS_AND_VEHICLES))

    assert code == FAILED
    assert problems(lines) == ["FAIL vehicles filter byExternalId"]
    assert any(
        "takes vehicleNumber_parameter; the integration sends externalId_parameter" in ln for ln in lines
    )


def test_an_unreachable_journal_and_rejected_credentials_name_their_console_step(stack, make_app):
    wrong_journal = make_app(SHIPPED, ACS_EVENTS_JOURNAL_URL=f"{stack.campaign.base_url}/events/nowhere")
    code, lines = check(wrong_journal)
    assert code == FAILED
    assert problems(lines) == ["FAIL journal journal"]
    assert fixes(lines)[0].endswith("(docs/campaign-setup.md#7-io-events-registration-and-journal-url)")

    code, lines = check(make_app(SHIPPED, ACS_CLIENT_SECRET="wrong-secret"))
    assert code == FAILED
    assert problems(lines)[0] == "FAIL campaign credentials"
    assert not any("wrong-secret" in line for line in lines)


def test_validate_config_runs_the_campaign_checks(stack, make_app):
    app = make_app(CONTACTS_AND_VEHICLES, EVENTS_PUSH_ENABLED="false")
    stack.campaign.remove_from_metadata("cusVehicle", link="contact")

    code, output = cli(app, "validate-config")

    assert code == FAILED
    assert any(
        line.startswith("  FAIL  vehicles") and "link 'contact' to profile is missing" in line
        for line in output.splitlines()
    )


# -- the emulator's metadata --------------------------------------------------------------------------


def test_declared_extension_fields_are_described_before_any_profile_has_them(emulator_factory, make_client):
    emu = emulator_factory(profile_extension={"cusLoyaltyTier": "string(20)"})
    client = make_client(emu)

    extended = client.pipeline.request("GET", "profileAndServicesExt/resourceType/profile").json()
    standard = client.pipeline.request("GET", "profileAndServices/resourceType/profile").json()

    assert emu.snapshot("profile") == []
    assert extended["content"]["cusLoyaltyTier"] == {
        "apiName": "cusLoyaltyTier",
        "label": "cusLoyaltyTier",
        "type": "string",
        "resType": "string",
        "length": 20,
    }
    assert "cusLoyaltyTier" not in standard["content"]
    assert extended["name"] == "profile" and extended["schema"] == "nms:recipient"
    assert client.pipeline.request("GET", extended["href"]).json() == extended  # its own `href` serves it


def test_the_filters_metadata_gives_each_filter_its_call_and_parameter(emu, make_client):
    client = make_client(emu)
    described = client.pipeline.request("GET", "profileAndServicesExt/resourceType/cusVehicle").json()

    filters = client.pipeline.request("GET", described["filters"]["href"]).json()

    assert described["content"]["profile"]["resTarget"] == "profile"
    assert filters["byExternalId"]["data"] == (
        "/profileAndServicesExt/cusVehicle/byExternalId?externalId_parameter=$value"
    )
    assert set(filters["byExternalId"]["metadata"]) == {"externalId_parameter"}


# -- a GET by PKey, bare or wrapped ------------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_record_read_by_pkey_is_the_same_bare_or_wrapped_in_content(emulator_factory, make_client, wrapped):
    emu = emulator_factory(wrap_single_records=wrapped)
    pkey = emu.put_profile({"email": "ann@example.com", "externalId": "c-1"})
    client = make_client(emu)
    raw = client.pipeline.request("GET", f"profileAndServicesExt/profile/{pkey}").json()

    record = client.get("profileAndServicesExt/profile", pkey)

    assert ("content" in raw) is wrapped
    assert record["PKey"] == pkey and record["externalId"] == "c-1"
    assert client.get("profileAndServicesExt/profile", "@no-such-record") is None


# -- links in the sync config -------------------------------------------------------------------------


def test_a_link_must_target_another_mapping_and_send_the_key_as_text():
    contacts = CONTACTS_AND_VEHICLES["tables"][0]
    lookup = {"d365": "cr123_contact", "acs": "ownerContactId"}

    def config(link_field: dict) -> dict:
        return {"tables": [contacts, {**VEHICLE_MAPPING, "fields": [link_field]}]}

    parsed = parse_sync_config(
        config({**lookup, "link": {"acs_field": "contact", "target_mapping": "contacts"}})
    )
    assert parsed.mapping("vehicles").fields[0].link.target_mapping == "contacts"
    with pytest.raises(SyncConfigError, match="link target_mapping 'accounts' is not another mapping"):
        parse_sync_config(config({**lookup, "link": {"acs_field": "contact", "target_mapping": "accounts"}}))
    with pytest.raises(SyncConfigError, match="a link sends the referenced key as text, not Integer"):
        parse_sync_config(
            config(
                {**lookup, "type": "Integer", "link": {"acs_field": "contact", "target_mapping": "contacts"}}
            )
        )
