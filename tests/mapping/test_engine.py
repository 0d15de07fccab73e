from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.d365.webhook import ChangeRecord
from shared.mapping.engine import (
    ColumnInfo,
    MappingEngine,
    MappingError,
    source_row_from_webapi,
    source_row_from_webhook,
)
from shared.mapping.model import OptOutPair, TableMapping

CONTACT_ID = "5b4c3a2d-0000-4000-8000-00000000c0de"
COLUMNS = {
    "gendercode": ColumnInfo("Picklist", {1: "Male", 2: "Female"}),
    "statecode": ColumnInfo("State", {0: "Active", 1: "Inactive"}),
    "birthdate": ColumnInfo("DateTime", date_only=True),
    "createdon": ColumnInfo("DateTime"),
    "numberofchildren": ColumnInfo("Integer"),
    "creditlimit": ColumnInfo("Money"),
    "donotemail": ColumnInfo("Boolean", {0: "Allow", 1: "Do Not Allow"}),
    "parentcustomerid": ColumnInfo("Customer"),
}


def mapping(**changes) -> TableMapping:
    data = {
        "name": "contacts",
        "d365_table": "contact",
        "acs_resource": "profileAndServicesExt/profile",
        "fields": [
            {"d365": "firstname", "acs": "firstName"},
            {"d365": "emailaddress1", "acs": "email", "apply_updates": False},
            {"d365": "address1_city", "acs": "location.city"},
            {"d365": "address1_postalcode", "acs": "location.zipCode"},
            {"d365": "gendercode", "acs": "gender"},
            {"d365": "birthdate", "acs": "birthDate"},
            {"d365": "parentcustomerid", "acs": "cusCompanyId"},
        ],
    }
    data.update(changes)
    return TableMapping.model_validate(data)


def webapi_row(**values) -> dict:
    row = {
        "@odata.etag": 'W/"1001"',
        "contactid": CONTACT_ID.upper(),
        "firstname": "Ada",
        "emailaddress1": "ada@example.com",
        "address1_city": "London",
        "address1_postalcode": "N1 9GU",
        "gendercode": 2,
        "gendercode@OData.Community.Display.V1.FormattedValue": "Female",
        "birthdate": "1815-12-10",
        "statecode": 0,
        "_parentcustomerid_value": "aaaaaaaa-0000-4000-8000-000000000001",
        "_parentcustomerid_value@OData.Community.Display.V1.FormattedValue": "Analytical Engines Ltd",
        "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account",
        "versionnumber": 1001,
        "modifiedon": "2026-11-20T10:00:00Z",
    }
    row.update(values)
    return row


def mapped(row: dict, engine: MappingEngine | None = None):
    engine = engine or MappingEngine(mapping(), columns=COLUMNS)
    return engine.map(source_row_from_webapi(row, id_column="contactid"))


def test_a_webapi_row_maps_into_flat_and_nested_campaign_fields():
    record = mapped(webapi_row())
    assert record.key == CONTACT_ID
    assert record.payload == {
        "externalId": CONTACT_ID,
        "firstName": "Ada",
        "email": "ada@example.com",
        "location": {"city": "London", "zipCode": "N1 9GU"},
        "gender": "Female",
        "birthDate": "1815-12-10",
        "cusCompanyId": "aaaaaaaa-0000-4000-8000-000000000001",
    }
    assert record.included


def test_webapi_rows_give_version_from_versionnumber_or_etag():
    row = source_row_from_webapi(webapi_row(versionnumber=None), id_column="contactid")
    assert row.version == 1001
    assert row.labels["parentcustomerid"] == "Analytical Engines Ltd"
    assert row.modified_on == datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_fields_without_apply_updates_are_left_out_of_updates_and_of_the_hash():
    first = mapped(webapi_row())
    email_changed = mapped(webapi_row(emailaddress1="countess@example.com"))
    assert "email" not in first.update_payload
    assert email_changed.payload["email"] == "countess@example.com"
    assert email_changed.content_hash == first.content_hash


def test_a_change_to_an_updatable_field_changes_the_hash():
    assert mapped(webapi_row(address1_city="Paris")).content_hash != mapped(webapi_row()).content_hash


def test_picklists_map_as_technical_value_when_asked():
    engine = MappingEngine(mapping(picklist_values="value"), columns=COLUMNS)
    assert mapped(webapi_row(), engine).payload["gender"] == 2


def test_picklist_labels_come_from_metadata_when_the_row_has_no_annotation():
    row = webapi_row()
    del row["gendercode@OData.Community.Display.V1.FormattedValue"]
    assert mapped(row).payload["gender"] == "Female"


def test_replacements_win_over_picklist_conversion():
    engine = MappingEngine(
        mapping(
            replacements=[
                {"field": "gendercode", "from": 2, "to": "F"},
                {"field": "gendercode", "from": "1", "to": "M"},
            ]
        ),
        columns=COLUMNS,
    )
    assert mapped(webapi_row(), engine).payload["gender"] == "F"
    assert mapped(webapi_row(gendercode=1), engine).payload["gender"] == "M"


@pytest.mark.parametrize(
    ("field_type", "raw", "expected"),
    [
        ("Boolean", "true", True),
        ("Boolean", 0, False),
        ("Integer", "42", 42),
        ("Decimal", Decimal("1250.75"), 1250.75),
        ("Double", "0.5", 0.5),
        ("String", 17, "17"),
        ("DateTime", "2026-11-20T10:00:00Z", "2026-11-20T10:00:00.000Z"),
        ("DateTime", datetime(2026, 11, 20, 11, 30, tzinfo=UTC), "2026-11-20T11:30:00.000Z"),
        ("Date", "2026-11-20T23:30:00Z", "2026-11-20"),
    ],
)
def test_primitive_types_are_converted_as_the_field_asks(field_type, raw, expected):
    engine = MappingEngine(
        mapping(fields=[{"d365": "description", "acs": "cusValue", "type": field_type}]), columns=COLUMNS
    )
    assert mapped(webapi_row(description=raw), engine).payload["cusValue"] == expected


def test_types_default_from_dataverse_metadata():
    engine = MappingEngine(
        mapping(
            fields=[
                {"d365": "numberofchildren", "acs": "cusKids"},
                {"d365": "creditlimit", "acs": "cusLimit"},
                {"d365": "createdon", "acs": "cusCreated"},
            ]
        ),
        columns=COLUMNS,
    )
    payload = mapped(
        webapi_row(numberofchildren="3", creditlimit=Decimal("10.5"), createdon="2026-01-02T03:04:05Z"),
        engine,
    ).payload
    assert payload["cusKids"] == 3 and payload["cusLimit"] == 10.5
    assert payload["cusCreated"] == "2026-01-02T03:04:05.000Z"


def test_a_value_that_cannot_be_converted_is_a_mapping_error_naming_the_field():
    engine = MappingEngine(mapping(fields=[{"d365": "description", "acs": "cusN", "type": "Integer"}]))
    with pytest.raises(MappingError, match="mapping 'contacts': description → cusN: 'abc'"):
        mapped(webapi_row(description="abc"), engine)


def test_null_values_clear_the_campaign_field():
    assert mapped(webapi_row(address1_city=None)).payload["location"]["city"] is None


@pytest.mark.parametrize(
    ("conditions", "combine", "included"),
    [
        ([{"field": "statecode", "op": "eq", "value": 0}], "and", True),
        ([{"field": "statecode", "op": "eq", "value": "1"}], "and", False),
        ([{"field": "statecode", "op": "ne", "value": 1}], "and", True),
        ([{"field": "address1_city", "op": "in", "value": ["Paris", "London"]}], "and", True),
        ([{"field": "address1_city", "op": "contains", "value": "lond"}], "and", True),
        ([{"field": "birthdate", "op": "lt", "value": "1900-01-01"}], "and", True),
        ([{"field": "modifiedon", "op": "ge", "value": "2026-11-21T00:00:00Z"}], "and", False),
        ([{"field": "versionnumber", "op": "gt", "value": "1000"}], "and", True),
        ([{"field": "telephone1", "op": "null"}], "and", True),
        ([{"field": "firstname", "op": "not_null"}], "and", True),
        (
            [
                {"field": "statecode", "op": "eq", "value": 1},
                {"field": "firstname", "op": "eq", "value": "Ada"},
            ],
            "or",
            True,
        ),
        (
            [
                {"field": "statecode", "op": "eq", "value": 1},
                {"field": "firstname", "op": "eq", "value": "Ada"},
            ],
            "and",
            False,
        ),
        ([{"field": "firstname", "op": "gt", "value": 5}], "and", False),
    ],
)
def test_filters_on_any_column_combine_with_and_or(conditions, combine, included):
    engine = MappingEngine(mapping(filter={"combine": combine, "conditions": conditions}), columns=COLUMNS)
    assert mapped(webapi_row(), engine).included is included


def test_filter_columns_and_opt_out_columns_are_part_of_the_select():
    engine = MappingEngine(
        mapping(filter={"conditions": [{"field": "statecode", "op": "eq", "value": 0}]}),
        optout_pairs=[OptOutPair(d365="donotemail", acs="blackListEmail")],
    )
    assert {"statecode", "donotemail", "contactid", "versionnumber", "firstname"} <= set(
        engine.source_columns
    )


def test_lookups_are_selected_by_their_web_api_value_name():
    engine = MappingEngine(mapping(), columns=COLUMNS)
    assert "_parentcustomerid_value" in engine.select and "parentcustomerid" not in engine.select
    assert "firstname" in engine.select


def test_opt_out_pairs_ride_along_as_booleans_that_always_update():
    engine = MappingEngine(
        mapping(), columns=COLUMNS, optout_pairs=[OptOutPair(d365="donotemail", acs="blackListEmail")]
    )
    record = mapped(webapi_row(donotemail=True), engine)
    assert record.payload["blackListEmail"] is True and record.update_payload["blackListEmail"] is True


def test_a_webhook_record_maps_like_the_same_webapi_row():
    record = ChangeRecord(
        message="Update",
        table="contact",
        id=CONTACT_ID,
        attributes={"address1_city": "London", "modifiedon": datetime(2026, 11, 20, 10, tzinfo=UTC)},
        formatted={"gendercode": "Female", "parentcustomerid": "Analytical Engines Ltd"},
        row_version="1001",
        post_image={
            "contactid": CONTACT_ID,
            "firstname": "Ada",
            "emailaddress1": "ada@example.com",
            "address1_city": "Paris",
            "address1_postalcode": "N1 9GU",
            "gendercode": 2,
            "birthdate": "1815-12-10",
            "parentcustomerid": "aaaaaaaa-0000-4000-8000-000000000001",
            "statecode": 0,
        },
    )
    row = source_row_from_webhook(record, id_column="contactid")
    assert row.version == 1001 and row.values["address1_city"] == "London"
    engine = MappingEngine(mapping(), columns=COLUMNS)
    assert engine.map(row).payload == mapped(webapi_row()).payload


def test_a_webhook_without_row_version_is_ordered_by_the_images_versionnumber_else_by_modifiedon():
    changed = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    with_image = ChangeRecord(
        message="Update",
        table="contact",
        id=CONTACT_ID,
        attributes={"firstname": "Ada", "modifiedon": changed},
        post_image={"contactid": CONTACT_ID, "versionnumber": 1002, "modifiedon": changed},
    )
    row = source_row_from_webhook(with_image, id_column="contactid")
    assert (row.version, row.modified_on) == (1002, changed)
    bare = ChangeRecord(
        message="Update",
        table="contact",
        id=CONTACT_ID,
        attributes={"firstname": "Ada", "modifiedon": changed},
    )
    row = source_row_from_webhook(bare, id_column="contactid")
    assert (row.version, row.modified_on) == (None, changed)
