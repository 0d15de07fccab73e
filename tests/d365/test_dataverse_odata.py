"""Dataverse URL pieces and error envelope reading, without a server."""

import uuid

import pytest
import requests

from shared.d365.changetracking import is_deleted_entry
from shared.d365.client import parse_error
from shared.d365.odata import id_from_entity_id, key_literal, query_string, record_path

GUID = "6c2f1a9e-3b7d-4e0a-9f21-0d8c5b4a7e13"


def dataverse_response(status: int, code: str, message: str = "m") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = f'{{"error":{{"code":"{code}","message":"{message}"}}}}'.encode()
    return response


@pytest.mark.parametrize("code", ["0x80072322", "0x80072321", "0x80072326"])
def test_service_protection_codes_are_retriable(code):
    info = parse_error(dataverse_response(429, code))

    assert info.code == code
    assert info.retriable is True


def test_an_expired_delta_token_is_never_retried_whatever_the_status():
    info = parse_error(
        dataverse_response(500, "0x80044352", "Version stamp associated with the client has expired.")
    )

    assert info.retriable is False
    assert info.message.startswith("Version stamp")


def test_data_errors_are_not_retriable_and_server_errors_are_left_to_the_status():
    assert parse_error(dataverse_response(400, "0x80044331")).retriable is False
    assert parse_error(dataverse_response(503, "0x80040216")).retriable is None


def test_a_body_without_the_envelope_still_gives_a_message():
    response = requests.Response()
    response.status_code = 502
    response._content = b"<html>Bad gateway</html>"

    info = parse_error(response)

    assert info.code is None
    assert "Bad gateway" in info.message


def test_key_literals_follow_odata_rules():
    assert key_literal("it's") == "'it''s'"
    assert key_literal("a b+c#d?") == "'a%20b%2Bc%23d%3F'"
    assert key_literal(42) == "42"
    assert key_literal(True) == "true"
    assert key_literal(uuid.UUID(GUID)) == GUID


def test_record_paths_take_a_guid_or_an_alternate_key():
    assert record_path("contacts", GUID) == f"contacts({GUID})"
    assert record_path("contacts", uuid.UUID(GUID)) == f"contacts({GUID})"
    assert record_path("contacts", {"emailaddress1": "a@b.c"}) == "contacts(emailaddress1='a%40b.c')"


def test_query_strings_keep_odata_option_names_and_encode_filter_values():
    query = query_string(select=["fullname", "emailaddress1"], filter="lastname eq 'A&B' and statecode eq 0")

    assert (
        query == "?$select=fullname,emailaddress1&$filter=lastname%20eq%20'A%26B'%20and%20statecode%20eq%200"
    )


def test_the_row_id_is_read_from_the_entity_id_header():
    assert id_from_entity_id(f"https://org/api/data/v9.2/contacts({GUID.upper()})") == GUID
    assert id_from_entity_id("https://org/api/data/v9.2/contacts(emailaddress1='a@b.c')") is None
    assert id_from_entity_id(None) is None


def test_deleted_entries_are_recognised_by_context_or_reason():
    context = "https://org/api/data/v9.2/$metadata#contacts/$deletedEntity"

    assert is_deleted_entry({"@odata.context": context, "id": GUID})
    assert is_deleted_entry({"id": GUID, "reason": "deleted"})
    assert not is_deleted_entry({"contactid": GUID, "@odata.etag": 'W/"1"'})
