"""The `$batch` multipart format: what the client writes and how it reads Dataverse's answers."""

import email
import email.policy
import json

import pytest

from shared.d365.batch import (
    MAX_BATCH_REQUESTS,
    BatchRequest,
    boundary_of,
    build_batch,
    parse_batch_response,
)

API = "https://org.example.com/api/data/v9.2/"
CONTACT_ID = "6c2f1a9e-3b7d-4e0a-9f21-0d8c5b4a7e13"
OTHER_ID = "1f0e9d8c-7b6a-4c5d-8e9f-a0b1c2d3e4f5"


def mime_parts(content_type: str, body: bytes) -> list[email.message.Message]:
    """Parse a multipart body with the standard library, independently of the code under test."""
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.compat32
    )
    assert message.is_multipart()
    return message.get_payload()


def http_lines(part: email.message.Message) -> list[str]:
    return part.get_payload().replace("\r\n", "\n").split("\n")


def response_part(status_line: str, headers: dict[str, str] | None = None, body=None, content_id=None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", status_line, "OData-Version: 4.0"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append("Content-Type: application/json; odata.metadata=minimal")
    lines += ["", json.dumps(body) if body is not None else ""]
    return "\r\n".join(lines)


def multipart(boundary: str, parts: list[str]) -> str:
    return "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"


def created(entity_set: str, row_id: str, content_id=None) -> str:
    location = f"{API}{entity_set}({row_id})"
    return response_part(
        "HTTP/1.1 204 No Content", {"Location": location, "OData-EntityId": location}, content_id=content_id
    )


def failed(code: str, message: str, status_line="HTTP/1.1 400 Bad Request", content_id=None) -> str:
    return response_part(
        status_line, body={"error": {"code": code, "message": message}}, content_id=content_id
    )


def test_batch_parts_are_http_requests_with_absolute_urls_and_entry_bodies():
    requests = [
        BatchRequest.create("contacts", {"firstname": "Ada"}),
        BatchRequest.update("contacts", CONTACT_ID, {"lastname": "Lovelace"}),
        BatchRequest.delete("contacts", OTHER_ID),
    ]

    content_type, body = build_batch(requests, api_url=API)

    assert content_type.startswith("multipart/mixed; boundary=batch_")
    parts = mime_parts(content_type, body)
    assert len(parts) == 3
    for part in parts:
        assert part["Content-Type"] == "application/http"
        assert part["Content-Transfer-Encoding"] == "binary"
    create, update, delete = (http_lines(p) for p in parts)
    assert create[0] == f"POST {API}contacts HTTP/1.1"
    assert create[1] == "Content-Type: application/json; type=entry"
    assert json.loads(create[3]) == {"firstname": "Ada"}
    assert update[0] == f"PATCH {API}contacts({CONTACT_ID}) HTTP/1.1"
    assert "If-Match: *" in update
    assert delete[0] == f"DELETE {API}contacts({OTHER_ID}) HTTP/1.1"
    assert not any(line.startswith("Content-Type") for line in delete)


def test_atomic_batch_wraps_every_request_in_one_change_set_numbered_by_content_id():
    requests = [BatchRequest.create("accounts", {"name": f"A{n}"}) for n in range(3)]

    content_type, body = build_batch(requests, api_url=API, atomic=True)

    (changeset,) = mime_parts(content_type, body)
    assert changeset.get_content_type() == "multipart/mixed"
    assert changeset.get_boundary().startswith("changeset_")
    inner = changeset.get_payload()
    assert [p["Content-ID"] for p in inner] == ["1", "2", "3"]
    assert [json.loads(http_lines(p)[3])["name"] for p in inner] == ["A0", "A1", "A2"]


def test_upsert_request_quotes_the_key_and_leaves_key_columns_out_of_the_body():
    request = BatchRequest.upsert(
        "contacts",
        {"emailaddress1": "o'brien&co/x@example.com"},
        {"emailaddress1": "o'brien&co/x@example.com", "lastname": "O'Brien"},
        mode="create_only",
    )

    assert request.method == "PATCH"
    assert request.url_or_path == "contacts(emailaddress1='o''brien%26co%2Fx%40example.com')"
    assert request.body == {"lastname": "O'Brien"}
    assert request.headers == {"If-None-Match": "*"}


def test_upsert_by_guid_leaves_the_id_unquoted_and_update_only_demands_an_existing_row():
    request = BatchRequest.upsert("contacts", CONTACT_ID, {"lastname": "X"}, mode="update_only")

    assert request.url_or_path == f"contacts({CONTACT_ID})"
    assert request.headers == {"If-Match": "*"}


def test_upsert_with_an_id_column_asks_for_the_row_back():
    request = BatchRequest.upsert(
        "cr123_vehicles", {"cr123_vin": "V1", "cr123_year": 2020}, {"x": 1}, id_column="cr123_vehicleid"
    )

    assert request.url_or_path == "cr123_vehicles(cr123_vin='V1',cr123_year=2020)?$select=cr123_vehicleid"
    assert request.headers == {"Prefer": "return=representation"}


def test_a_non_guid_string_key_is_refused():
    with pytest.raises(ValueError, match="not a GUID"):
        BatchRequest.delete("contacts", "ada@example.com")


def test_a_batch_larger_than_the_service_limit_is_refused():
    requests = [BatchRequest.delete("contacts", CONTACT_ID)] * (MAX_BATCH_REQUESTS + 1)

    with pytest.raises(ValueError, match="at most 1000"):
        build_batch(requests, api_url=API)


def test_continue_on_error_response_reports_each_part_in_request_order():
    requests = [
        BatchRequest.create("contacts", {"lastname": "A"}),
        BatchRequest.create("contacts", {"lastname": "x" * 300}),
        BatchRequest.delete("contacts", OTHER_ID),
    ]
    boundary = "batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139"
    body = multipart(
        boundary,
        [
            created("contacts", CONTACT_ID),
            failed("0x80044331", "A validation error occurred."),
            response_part("HTTP/1.1 204 No Content"),
        ],
    )

    results = parse_batch_response(f"multipart/mixed; boundary={boundary}", body.encode(), requests)

    assert [r.status for r in results] == [204, 400, 204]
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].id == CONTACT_ID
    assert results[1].error_code == "0x80044331"
    assert results[1].error_message == "A validation error occurred."
    assert [r.request for r in results] == requests


def test_change_set_responses_are_matched_by_content_id():
    requests = [BatchRequest.create("contacts", {"lastname": n}) for n in "AB"]
    changeset = "changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15"
    batch = "batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f"
    inner = multipart(
        changeset,
        [created("contacts", OTHER_ID, content_id="2"), created("contacts", CONTACT_ID, content_id="1")],
    )
    body = multipart(batch, [f"Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n{inner}"])

    results = parse_batch_response(f'multipart/mixed; boundary="{batch}"', body, requests, atomic=True)

    assert [r.id for r in results] == [CONTACT_ID, OTHER_ID]
    assert [r.content_id for r in results] == ["1", "2"]


def test_a_failed_change_set_reports_its_error_for_every_request_it_rolled_back():
    requests = [BatchRequest.create("contacts", {"lastname": n}) for n in "ABC"]
    batch = "batchresponse_1"
    body = multipart(batch, [failed("0x80040237", "Duplicate record.", "HTTP/1.1 412 Precondition Failed")])

    results = parse_batch_response(f"multipart/mixed; boundary={batch}", body, requests, atomic=True)

    assert [r.status for r in results] == [412, 412, 412]
    assert {r.error_code for r in results} == {"0x80040237"}


def test_a_batch_stopped_at_the_first_error_marks_later_requests_as_not_executed():
    requests = [BatchRequest.delete("contacts", CONTACT_ID) for _ in range(3)]
    batch = "batchresponse_156da4b8"
    body = multipart(
        batch,
        [
            response_part("HTTP/1.1 204 No Content"),
            failed("0x80040217", "Not found", "HTTP/1.1 404 Not Found"),
        ],
    )

    results = parse_batch_response(f"multipart/mixed; boundary={batch}", body, requests)

    assert [r.status for r in results] == [204, 404, None]
    assert [r.executed for r in results] == [True, True, False]


def test_parsing_accepts_bare_lf_line_breaks_and_headers_without_a_space():
    requests = [BatchRequest.delete("contacts", CONTACT_ID)]
    body = (
        "--b1\nContent-Type:application/http\nContent-Transfer-Encoding:binary\n\n"
        "HTTP/1.1 204 No Content\nOData-Version:4.0\n\n\n--b1--\n"
    )

    (result,) = parse_batch_response("multipart/mixed;boundary=b1", body, requests)

    assert result.status == 204
    assert result.headers["odata-version"] == "4.0"


def test_boundary_is_read_only_from_multipart_content_types():
    assert boundary_of('multipart/mixed; boundary="batchresponse_x"') == "batchresponse_x"
    assert boundary_of("application/json; odata.metadata=minimal") is None
    assert boundary_of(None) is None
