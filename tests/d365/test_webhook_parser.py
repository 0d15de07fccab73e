import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.d365.webhook import Reference, WebhookPayloadError, load_context, parse, parse_wcf_date
from tests.d365.fixtures.webhook_bodies import (
    ACCOUNT_ID,
    APP_USER_ID,
    CONTACT_ID,
    CORRELATION_ID,
    OPERATION_ID,
    context,
    entity,
    money,
    option,
    reference,
    to_wire,
    typed,
    wcf_date,
    without_oversized_parts,
)

MODIFIED_ON = datetime(2024, 3, 5, 14, 30, 12, tzinfo=UTC)
CREATED_ON = datetime(2024, 3, 5, 14, 30, 13, tzinfo=UTC)


def update_contact_body(**overrides):
    target = entity(
        "contact",
        CONTACT_ID,
        {
            "emailaddress1": "nina.berg@example.com",
            "contactid": CONTACT_ID,
            "modifiedon": wcf_date(MODIFIED_ON),
            "modifiedby": reference("systemuser", APP_USER_ID),
            "parentcustomerid": reference("account", ACCOUNT_ID, "Fabrikam"),
            "modifiedonbehalfby": None,
        },
        row_version=overrides.pop("target_row_version", None),
    )
    post_image = entity(
        "contact",
        CONTACT_ID,
        {"fullname": "Nina Berg", "emailaddress1": "nina.berg@example.com", "contactid": CONTACT_ID},
        row_version="88214",
        with_type=False,
    )
    return context(
        "Update",
        "contact",
        CONTACT_ID,
        target=target,
        created_on=wcf_date(CREATED_ON, "-0700"),
        post_image=post_image,
        **overrides,
    )


def create_contact_body():
    target = entity(
        "contact",
        CONTACT_ID,
        {
            "firstname": "Nina",
            "preferredcontactmethodcode": option(2),
            "gendercode": option(2),
            "createdon": wcf_date(MODIFIED_ON, "+0100"),
        },
        formatted={
            "preferredcontactmethodcode": "Email",
            "gendercode": "Female",
            "createdon": "3/5/2024 3:30 PM",
        },
    )
    return context(
        "Create",
        "contact",
        CONTACT_ID,
        target=target,
        created_on=wcf_date(CREATED_ON),
        output={"id": CONTACT_ID},
        mode=0,
    )


def delete_contact_body():
    pre_image = entity("contact", CONTACT_ID, {"emailaddress1": "nina.berg@example.com"}, with_type=False)
    return context(
        "Delete",
        "contact",
        CONTACT_ID,
        target=reference("contact", CONTACT_ID),
        created_on=wcf_date(CREATED_ON),
        pre_image=pre_image,
    )


def with_target_attribute(body, name, value):
    body["InputParameters"][0]["value"]["Attributes"].append({"key": name, "value": value})
    return body


def test_async_update_yields_only_the_target_columns_as_plain_values():
    record = parse(to_wire(update_contact_body()), {"x-ms-correlation-request-id": CORRELATION_ID})

    assert (record.message, record.table, record.id) == ("Update", "contact", CONTACT_ID)
    assert record.attributes == {
        "emailaddress1": "nina.berg@example.com",
        "contactid": CONTACT_ID,
        "modifiedon": MODIFIED_ON,
        "modifiedby": APP_USER_ID,
        "parentcustomerid": ACCOUNT_ID,
        "modifiedonbehalfby": None,
    }
    assert "fullname" not in record.attributes  # the post image is not merged in
    assert record.post_image["fullname"] == "Nina Berg"
    assert record.pre_image == {}
    assert (record.mode, record.stage, record.depth) == (1, 40, 1)
    assert record.operation_id == OPERATION_ID
    assert record.correlation_id == CORRELATION_ID
    assert record.initiating_user_id == APP_USER_ID
    assert record.organization_name == "contoso"
    assert record.size_exceeded is False


def test_update_keeps_the_full_references_beside_the_ids():
    record = parse(to_wire(update_contact_body()), None)

    assert record.references == {
        "modifiedby": Reference("systemuser", APP_USER_ID, None),
        "parentcustomerid": ("account", ACCOUNT_ID, "Fabrikam"),
    }


def test_wcf_dates_become_utc_whether_or_not_they_carry_an_offset():
    record = parse(update_contact_body())

    assert record.attributes["modifiedon"] == MODIFIED_ON
    assert record.operation_created_on == CREATED_ON  # "-0700" suffix is informational only
    assert record.operation_created_on.tzinfo is UTC


def test_wcf_dates_before_1970_are_supported():
    assert parse_wcf_date("/Date(-86400000+0200)/") == datetime(1969, 12, 31, tzinfo=UTC)


def test_row_version_comes_from_the_post_image_when_the_target_has_none():
    assert parse(update_contact_body()).row_version == "88214"


def test_row_version_prefers_the_target():
    assert parse(update_contact_body(target_row_version="88300")).row_version == "88300"


def test_create_gives_option_set_integers_labels_and_the_new_id():
    body = create_contact_body()

    record = parse(json.dumps(body))

    assert record.message == "Create"
    assert record.mode == 0
    assert record.attributes["preferredcontactmethodcode"] == 2
    assert record.attributes["createdon"] == MODIFIED_ON
    assert record.formatted == {
        "preferredcontactmethodcode": "Email",
        "gendercode": "Female",
        "createdon": "3/5/2024 3:30 PM",
    }
    assert load_context(body).output_parameters[0].value == CONTACT_ID


def test_delete_target_is_a_reference_and_leaves_attributes_empty():
    record = parse(to_wire(delete_contact_body()))

    assert (record.message, record.id) == ("Delete", CONTACT_ID)
    assert record.attributes == {}
    assert record.references == {}
    assert record.pre_image == {"emailaddress1": "nina.berg@example.com"}
    assert record.size_exceeded is False


@pytest.mark.parametrize("escape_slashes", [True, False], ids=["escaped", "plain"])
def test_type_names_parse_alike_with_or_without_escaped_slashes(escape_slashes):
    wire = to_wire(update_contact_body(), escape_slashes=escape_slashes)
    assert (b"http:\\/\\/" in wire) is escape_slashes

    record = parse(wire)

    assert record.attributes["parentcustomerid"] == ACCOUNT_ID
    assert record.attributes["modifiedon"] == MODIFIED_ON
    assert record.operation_created_on == CREATED_ON


@pytest.mark.parametrize("header", ["x-ms-dynamics-msg-size-exceeded", "X-MS-Dynamics-Msg-Size-Exceeded"])
def test_size_exceeded_body_parses_and_is_flagged_for_a_reread(header):
    body = without_oversized_parts(update_contact_body())

    record = parse(to_wire(body), {header: "true"})

    assert record.size_exceeded is True
    assert (record.table, record.id) == ("contact", CONTACT_ID)
    assert record.attributes == {}
    assert record.post_image == {}


def test_size_exceeded_header_saying_false_is_not_a_flag():
    assert parse(update_contact_body(), {"x-ms-dynamics-msg-size-exceeded": "false"}).size_exceeded is False


def test_update_without_a_target_is_flagged_for_a_reread_even_without_the_header():
    body = update_contact_body()
    body["InputParameters"] = []

    assert parse(body).size_exceeded is True


def test_money_becomes_decimal_and_multi_select_a_list_of_ints():
    body = with_target_attribute(update_contact_body(), "creditlimit", money(1250.75))
    with_target_attribute(body, "cr1a2_interests", [option(100000000), option(100000003)])
    with_target_attribute(
        body, "cr1a2_channels", typed("OptionSetValueCollection", Values=[option(7), option(9)])
    )
    with_target_attribute(body, "cr1a2_nochannels", [])

    attributes = parse(to_wire(body, escape_slashes=True)).attributes

    assert attributes["creditlimit"] == Decimal("1250.75")
    assert isinstance(attributes["creditlimit"], Decimal)
    assert attributes["cr1a2_interests"] == [100000000, 100000003]
    assert attributes["cr1a2_channels"] == [7, 9]
    assert attributes["cr1a2_nochannels"] == []


def test_unknown_typed_value_is_kept_as_sent():
    unknown = typed("BooleanManagedProperty", Value=True, CanBeChanged=False)
    body = with_target_attribute(update_contact_body(), "iscustomizable", unknown)

    assert parse(to_wire(body, escape_slashes=True)).attributes["iscustomizable"] == unknown


def test_extra_keys_are_tolerated_and_kept():
    body = update_contact_body()
    body["SomethingNew"] = {"Nested": [1, 2]}
    body["InputParameters"][0]["value"]["FutureFlag"] = True
    body["InputParameters"].append({"key": "ConcurrencyBehavior", "value": 0})

    parsed = load_context(body)

    assert parse(body).attributes["contactid"] == CONTACT_ID
    assert parsed.model_extra["SomethingNew"] == {"Nested": [1, 2]}
    assert parsed.input_parameter("Target").model_extra["FutureFlag"] is True
    assert parsed.input_parameter("ConcurrencyBehavior") == 0


def test_parent_context_is_parsed_as_a_context_too():
    parent = context(
        "Update", "contact", CONTACT_ID, target=None, created_on=wcf_date(CREATED_ON), stage=30, depth=1
    )
    parent["SharedVariables"] = [
        {"key": "ChangedEntityTypes", "value": [{"key": "contact", "value": "Update"}]}
    ]

    parsed = load_context(update_contact_body(parent=parent))

    assert parsed.parent_context.stage == 30
    assert parsed.parent_context.shared_variables[0].value == [{"key": "contact", "value": "Update"}]
    assert parsed.parent_context.parent_context is None


def test_primary_entity_id_is_normalised_to_a_lower_case_guid():
    body = update_contact_body()
    body["PrimaryEntityId"] = "{" + CONTACT_ID.upper() + "}"

    assert parse(body).id == CONTACT_ID


@pytest.mark.parametrize("header", ["x-ms-correlation-request-id", "X-Ms-Correlation-Request-Id"])
def test_correlation_id_falls_back_to_the_header_in_any_case(header):
    body = update_contact_body(correlation_id=None)

    assert parse(body, {header: "7c1d0e2f-0000-4000-8000-000000000001"}).correlation_id == (
        "7c1d0e2f-0000-4000-8000-000000000001"
    )
    assert parse(body, None).correlation_id is None


@pytest.mark.parametrize("as_", [bytes, bytearray, str, dict], ids=lambda kind: kind.__name__)
def test_body_may_be_bytes_str_or_dict(as_):
    body = update_contact_body()
    given = {bytes: to_wire, bytearray: lambda b: bytearray(to_wire(b)), str: json.dumps, dict: dict}[as_](
        body
    )

    assert parse(given).attributes["parentcustomerid"] == ACCOUNT_ID


def test_body_with_a_utf8_byte_order_mark_is_read():
    assert parse(b"\xef\xbb\xbf" + to_wire(update_contact_body())).id == CONTACT_ID


def _body_with(**changes):
    body = update_contact_body()
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return json.dumps(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "body is not valid JSON"),
        (b"\xff\xfe\x00garbage", "body is not valid UTF-8"),
        ("[1, 2]", "body must be a JSON object, got an array"),
        ("null", "body must be a JSON object, got null"),
        (_body_with(PrimaryEntityId=...), "missing PrimaryEntityId"),
        (_body_with(PrimaryEntityId="not-a-guid"), "PrimaryEntityId is not a GUID"),
        (
            _body_with(InputParameters={"Target": {}}),
            "InputParameters must be an array of key/value pairs",
        ),
        (
            _body_with(PostEntityImages=[["PostImage", {}]]),
            "PostEntityImages must be an array of key/value pairs",
        ),
        (_body_with(OperationCreatedOn="2024-03-05"), "OperationCreatedOn is not a WCF JSON date"),
        (_body_with(Depth="deep"), "Depth: Input should be a valid integer"),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "array",
        "null",
        "missing-id",
        "bad-guid",
        "input-parameters-object",
        "images-not-pairs",
        "bad-date",
        "bad-depth",
    ],
)
def test_malformed_body_raises_a_payload_error_saying_what_is_wrong(body, message):
    with pytest.raises(WebhookPayloadError) as caught:
        parse(body, {})

    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_malformed_nested_collection_names_where_it_is():
    body = update_contact_body()
    body["InputParameters"][0]["value"]["Attributes"] = {"firstname": "Nina"}

    with pytest.raises(WebhookPayloadError, match=r"InputParameters\[0\]\.value\.Entity\.Attributes must be"):
        parse(body)
