"""The production Dataverse client against the Dataverse emulator, over real (TLS) sockets."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import SecretStr

from shared.d365.batch import BatchRequest
from shared.d365.changetracking import ChangeTrackingReader, DeltaTokenExpired
from shared.d365.client import DataverseClient
from shared.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    RequestRejectedError,
)

MISSING_ID = "00000000-0000-4000-8000-00000000dead"

WRONG_SECRET = "wrong-secret-not-real"  # an obviously fake value the emulator refuses


def all_rows(pages) -> list[dict]:
    return [row for page in pages for row in page.rows]


# Paging and reads


def test_paging_reads_12345_rows_in_three_pages_of_at_most_5000(start_emulator, make_client):
    emulator = start_emulator(contacts=12345)
    client = make_client(emulator)

    pages = list(client.iter_pages("contacts", select=["contactid", "lastname"], page_size=5000))

    assert [len(page.rows) for page in pages] == [5000, 5000, 2345]
    assert [page.next_link is not None for page in pages] == [True, True, False]
    ids = [row["contactid"] for row in all_rows(pages)]
    assert len(set(ids)) == 12345
    assert set(ids) == {row["contactid"] for row in emulator.rows("contact")}


def test_filter_and_formatted_values_come_back_on_request(emulator, make_client):
    client = make_client(emulator)
    row_id = emulator.create_row("contact", {"lastname": "O'Hara & Sons", "donotemail": True})
    emulator.create_row("contact", {"lastname": "Someone else"})

    (page,) = client.iter_pages("contacts", filter="lastname eq 'O''Hara & Sons'", annotations=True)

    (row,) = page.rows
    assert row["contactid"] == row_id
    assert row["donotemail"] is True
    assert row["donotemail@OData.Community.Display.V1.FormattedValue"] == "Do Not Allow"


def test_get_answers_the_row_or_none_when_missing(emulator, make_client):
    client = make_client(emulator)
    row_id = emulator.create_row("contact", {"firstname": "Ada", "lastname": "Lovelace"})

    row = client.get("contacts", row_id, select=["firstname", "lastname"])

    assert (row["firstname"], row["lastname"]) == ("Ada", "Lovelace")
    assert client.get("contacts", MISSING_ID) is None


# Writes


def test_create_update_and_delete_a_row(emulator, make_client):
    client = make_client(emulator)

    row_id = client.create("contacts", {"firstname": "Grace", "lastname": "Hopper"})
    client.update("contacts", row_id, {"jobtitle": "Rear Admiral"})

    assert emulator.get_row("contact", row_id)["jobtitle"] == "Rear Admiral"
    assert client.delete("contacts", row_id) is True
    assert client.delete("contacts", row_id) is False
    with pytest.raises(NotFoundError):
        client.delete("contacts", row_id, missing_ok=False)


def test_update_of_a_missing_row_is_not_found_and_a_stale_etag_fails_the_precondition(emulator, make_client):
    client = make_client(emulator)
    row_id = emulator.create_row("contact", {"lastname": "Etag"})
    etag = client.get("contacts", row_id)["@odata.etag"]
    emulator.update_row("contact", row_id, {"lastname": "Changed elsewhere"})

    with pytest.raises(NotFoundError):
        client.update("contacts", MISSING_ID, {"lastname": "x"})
    with pytest.raises(PreconditionFailedError):
        client.update("contacts", row_id, {"lastname": "Mine"}, if_match=etag)
    assert emulator.get_row("contact", row_id)["lastname"] == "Changed elsewhere"


def test_a_data_error_is_rejected_with_dataverse_code(emulator, make_client):
    client = make_client(emulator)

    with pytest.raises(RequestRejectedError) as caught:
        client.create("contacts", {"lastname": "x" * 51})

    assert caught.value.code == "0x80044331"
    assert caught.value.retriable is False


def test_upsert_creates_then_updates_by_alternate_key(emulator, make_client):
    client = make_client(emulator)
    key = {"cr123_vin": "1HGCM82633A00435'"}

    first = client.upsert("cr123_vehicles", key, {"cr123_name": "Accord"}, id_column="cr123_vehicleid")
    second = client.upsert("cr123_vehicles", key, {"cr123_name": "Accord LX"}, id_column="cr123_vehicleid")
    plain = client.upsert("cr123_vehicles", key, {"cr123_name": "Accord EX"})

    assert first.created is True
    assert second.created is False
    assert plain.created is None
    assert first.id == second.id
    (row,) = [r for r in emulator.rows("cr123_vehicle") if r["cr123_vin"] == key["cr123_vin"]]
    assert row["cr123_name"] == "Accord EX"
    assert row["cr123_vehicleid"] == first.id


def test_create_only_upsert_of_an_existing_row_is_a_conflict(emulator, make_client):
    client = make_client(emulator)
    key = {"cr123_vin": "VIN-CREATE-ONLY"}
    created = client.upsert("cr123_vehicles", key, {"cr123_name": "First"}, mode="create_only")

    with pytest.raises(ConflictError) as caught:
        client.upsert("cr123_vehicles", key, {"cr123_name": "Second"}, mode="create_only")

    assert created.created is True
    assert caught.value.status == 412
    assert [
        r["cr123_name"] for r in emulator.rows("cr123_vehicle") if r["cr123_vin"] == key["cr123_vin"]
    ] == ["First"]


def test_update_only_upsert_of_a_missing_row_is_not_found(emulator, make_client):
    client = make_client(emulator)

    with pytest.raises(NotFoundError):
        client.upsert("cr123_vehicles", {"cr123_vin": "VIN-MISSING"}, {"cr123_name": "x"}, mode="update_only")

    assert not [r for r in emulator.rows("cr123_vehicle") if r["cr123_vin"] == "VIN-MISSING"]


# $batch


def test_batch_continues_past_a_failing_part_and_reports_its_code(emulator, make_client):
    client = make_client(emulator)
    existing = emulator.create_row("contact", {"lastname": "Before"})
    requests = [
        BatchRequest.create("contacts", {"lastname": "Created in batch"}),
        BatchRequest.create("contacts", {"lastname": "x" * 51}),
        BatchRequest.update("contacts", existing, {"lastname": "Updated in batch"}),
        BatchRequest.upsert("cr123_vehicles", {"cr123_vin": "VIN-BATCH"}, {"cr123_name": "Batch car"}),
    ]

    results = client.execute_batch(requests, continue_on_error=True)

    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].status == 400
    assert results[1].error_code == "0x80044331"
    assert emulator.get_row("contact", results[0].id)["lastname"] == "Created in batch"
    assert emulator.get_row("contact", existing)["lastname"] == "Updated in batch"
    assert [r["cr123_name"] for r in emulator.rows("cr123_vehicle") if r["cr123_vin"] == "VIN-BATCH"] == [
        "Batch car"
    ]


def test_batch_without_continue_on_error_stops_at_the_first_failure(emulator, make_client):
    client = make_client(emulator)
    requests = [
        BatchRequest.create("contacts", {"lastname": "Runs"}),
        BatchRequest.update("contacts", MISSING_ID, {"lastname": "Fails"}),
        BatchRequest.create("contacts", {"lastname": "Never runs"}),
    ]

    results = client.execute_batch(requests, continue_on_error=False)

    assert [r.status for r in results] == [204, 404, None]
    lastnames = {row.get("lastname") for row in emulator.rows("contact")}
    assert "Runs" in lastnames
    assert "Never runs" not in lastnames


def test_an_atomic_batch_is_rolled_back_as_a_whole(emulator, make_client):
    client = make_client(emulator)
    before = len(emulator.rows("contact"))
    requests = [
        BatchRequest.create("contacts", {"lastname": "Rolled back"}),
        BatchRequest.create("contacts", {"lastname": "x" * 51}),
    ]

    results = client.execute_batch(requests, atomic=True)

    assert [r.ok for r in results] == [False, False]
    assert {r.error_code for r in results} == {"0x80044331"}
    assert len(emulator.rows("contact")) == before


def test_an_atomic_batch_answers_each_request_by_content_id(emulator, make_client):
    client = make_client(emulator)
    requests = [BatchRequest.create("contacts", {"lastname": f"Atomic {n}"}) for n in range(3)]

    results = client.execute_batch(requests, atomic=True)

    assert all(r.ok for r in results)
    assert [emulator.get_row("contact", r.id)["lastname"] for r in results] == [
        "Atomic 0",
        "Atomic 1",
        "Atomic 2",
    ]


def test_more_than_1000_requests_are_split_into_several_batches(emulator, make_client):
    client = make_client(emulator)
    requests = [
        BatchRequest.upsert("cr123_vehicles", {"cr123_vin": f"VIN{n:05d}"}, {"cr123_name": f"Car {n}"})
        for n in range(1001)
    ]

    results = client.execute_batch(requests)

    assert len(results) == 1001
    assert all(r.ok for r in results)
    assert client.pipeline.stats["requests"] == 2
    assert len([r for r in emulator.rows("cr123_vehicle") if r["cr123_vin"].startswith("VIN")]) == 1001


# Change tracking


def test_change_tracking_full_cycle_initial_changes_deletes_then_expiry(start_emulator, make_client):
    emulator = start_emulator(change_token_max_age_seconds=7 * 86400)
    ids = emulator.seed_contacts(120, seed=3)
    client = make_client(emulator)
    reader = ChangeTrackingReader(client, "contacts", select=["contactid", "lastname"], page_size=50)

    initial = list(reader.iter_pages())

    assert [len(p.upserts) for p in initial] == [50, 50, 20]
    assert all(p.is_initial for p in initial)
    assert [p.delta_link is not None for p in initial] == [False, False, True]
    assert {r["contactid"] for p in initial for r in p.upserts} == set(ids)
    delta_link = initial[-1].checkpoint

    changed = ids[0]
    emulator.update_row("contact", changed, {"lastname": "Changed"})
    added = emulator.create_row("contact", {"lastname": "Added"})
    (changes,) = reader.iter_pages(delta_link)

    assert not changes.is_initial
    assert {r["contactid"]: r["lastname"] for r in changes.upserts} == {changed: "Changed", added: "Added"}
    assert changes.deletes == []
    assert changes.delta_link is not None

    emulator.delete_row("contact", ids[1])
    transient = emulator.create_row("contact", {"lastname": "Short-lived"})
    emulator.delete_row("contact", transient)
    (deletes,) = reader.iter_pages(changes.checkpoint)

    assert deletes.upserts == []
    assert set(deletes.deletes) == {ids[1], transient}

    emulator.advance_time(8 * 86400)
    with pytest.raises(DeltaTokenExpired) as caught:
        list(reader.iter_pages(deletes.checkpoint))
    assert caught.value.code == "0x80044352"


def test_change_tracking_resumes_an_initial_load_from_a_saved_next_link(emulator, make_client):
    ids = emulator.seed_contacts(30, seed=5)
    client = make_client(emulator)
    reader = ChangeTrackingReader(client, "contacts", select="contactid", page_size=10)

    first = next(reader.iter_pages())
    rest = list(ChangeTrackingReader(client, "contacts", page_size=10).iter_pages(first.checkpoint))

    assert first.next_link == first.checkpoint
    assert all(p.is_initial for p in rest)
    seen = [r["contactid"] for p in [first, *rest] for r in p.upserts]
    assert sorted(seen) == sorted(ids)
    assert rest[-1].delta_link is not None


def test_a_large_delta_is_paged_and_only_its_last_page_carries_the_delta_link(emulator, make_client):
    ids = emulator.seed_contacts(30, seed=9)
    client = make_client(emulator)
    reader = ChangeTrackingReader(client, "contacts", select="lastname", page_size=10)
    *_, last_initial = reader.iter_pages()
    for row_id in ids[:25]:
        emulator.update_row("contact", row_id, {"lastname": "Renamed"})

    delta = list(reader.iter_pages(last_initial.checkpoint))

    assert [len(p.upserts) for p in delta] == [10, 10, 5]
    assert [p.is_initial for p in delta] == [False, False, False]
    assert [p.delta_link is not None for p in delta] == [False, False, True]
    assert [p.checkpoint == p.next_link for p in delta[:2]] == [True, True]
    assert {r["contactid"] for p in delta for r in p.upserts} == set(ids[:25])


def test_change_tracking_works_on_a_custom_table(emulator, make_client):
    client = make_client(emulator)
    vehicle = emulator.create_row("cr123_vehicle", {"cr123_name": "Van", "cr123_vin": "VIN-CT"})
    reader = ChangeTrackingReader(client, "cr123_vehicles", select=["cr123_name"])
    (initial,) = reader.iter_pages()
    emulator.update_row("cr123_vehicle", vehicle, {"cr123_name": "Camper"})

    (changes,) = reader.iter_pages(initial.checkpoint)

    assert [r["cr123_name"] for r in changes.upserts] == ["Camper"]


# Service protection


def test_client_waits_out_429s_and_never_exceeds_its_concurrency(start_emulator, make_client):
    emulator = start_emulator(max_requests=25, window_seconds=0.5, max_concurrency=4)
    emulator.seed_contacts(10, seed=7)
    client = make_client(emulator, max_concurrency=4)

    def read(n: int) -> int:
        return len(next(client.iter_pages("contacts", select="contactid", page_size=10)).rows)

    with ThreadPoolExecutor(max_workers=20) as pool:
        counts = list(pool.map(read, range(40)))

    assert counts == [10] * 40
    assert emulator.limit.rejected["requests"] > 0
    assert emulator.limit.rejected["concurrency"] == 0
    assert emulator.limit.peak_in_flight <= 4
    assert client.pipeline.stats["throttled"] > 0


# Auth


def test_a_wrong_client_secret_is_an_authentication_error(emulator, make_client):
    client = make_client(emulator, client_secret=WRONG_SECRET)

    with pytest.raises(AuthenticationError) as caught:
        client.get("contacts", MISSING_ID)

    assert "wrong-secret-not-real" not in str(caught.value)


class RevokedFirst:
    """Hands out a token the service does not know until the pipeline invalidates it after the 401."""

    def __init__(self, provider) -> None:
        self.provider = provider
        self.revoked = True

    def authorization(self) -> str:
        return "Bearer revoked-token" if self.revoked else self.provider.authorization()

    def invalidate(self) -> None:
        self.revoked = False
        self.provider.invalidate()


def test_a_rejected_token_is_renewed_once_and_the_call_succeeds(emulator, make_token_provider):
    tokens = RevokedFirst(make_token_provider(emulator))
    row_id = emulator.create_row("contact", {"lastname": "Visible"})

    with DataverseClient(
        org_url=emulator.base_url, token_provider=tokens, ca_bundle=emulator.ca_bundle
    ) as client:
        row = client.get("contacts", row_id, select="lastname")

    assert row["lastname"] == "Visible"
    assert tokens.revoked is False
    assert emulator.stats()["tokens_issued"] == 1


def test_the_token_is_cached_until_invalidated(emulator, make_token_provider):
    provider = make_token_provider(emulator)

    first = provider.authorization()
    again = provider.authorization()
    issued_before_invalidation = emulator.stats()["tokens_issued"]
    provider.invalidate()
    renewed = provider.authorization()

    assert again == first
    assert issued_before_invalidation == 1
    assert renewed != first
    assert emulator.stats()["tokens_issued"] == 2


def test_the_token_provider_accepts_a_secret_str(emulator, make_token_provider, client_secret):
    provider = make_token_provider(emulator, client_secret=SecretStr(client_secret))

    assert provider.authorization().startswith("Bearer ")


# Metadata


def test_table_metadata_reads_primary_columns_choices_and_lookup_targets(emulator, make_client):
    client = make_client(emulator)

    contact = client.metadata.table_metadata("contact")

    assert (contact.entity_set_name, contact.primary_id, contact.primary_name) == (
        "contacts",
        "contactid",
        "fullname",
    )
    assert contact.change_tracking_enabled is True
    assert contact.is_activity is False
    assert contact.attributes["gendercode"].options == {1: "Male", 2: "Female"}
    assert contact.attributes["donotemail"].options == {0: "Allow", 1: "Do Not Allow"}
    assert contact.attributes["statecode"].options == {0: "Active", 1: "Inactive"}
    assert contact.attributes["statuscode"].type == "Status"
    assert set(contact.attributes["parentcustomerid"].targets) == {"account", "contact"}
    assert contact.attributes["lastname"].type == "String"


def test_alternate_keys_are_listed_with_their_columns(emulator, make_client):
    client = make_client(emulator)

    (key,) = client.metadata.alternate_keys("cr123_vehicle")

    assert key.key_attributes == ("cr123_vin",)
    assert key.index_status == "Active"


def test_regarding_navigation_property_of_a_standard_activity(emulator, make_client):
    client = make_client(emulator)

    assert (
        client.metadata.regarding_navigation_property("task", "contact") == "regardingobjectid_contact_task"
    )
    with pytest.raises(NotFoundError):
        client.metadata.regarding_navigation_property("task", "cr123_vehicle")


def test_setup_creates_an_activity_table_with_a_column_a_key_and_change_tracking(emulator, make_client):
    client = make_client(emulator)

    client.metadata.create_table(activity_table_definition("cr123_emailopen", "cr123_EmailOpen"))
    client.metadata.create_attribute("cr123_emailopen", string_column("cr123_EventId", "Event id", 100))
    client.metadata.create_alternate_key(
        "cr123_emailopen",
        {
            "SchemaName": "cr123_eventid_key",
            "DisplayName": label("Event id"),
            "KeyAttributes": ["cr123_eventid"],
        },
    )
    changed = client.metadata.set_change_tracking("cr123_emailopen", True)

    table = client.metadata.table_metadata("cr123_emailopen")
    assert changed is True
    assert client.metadata.set_change_tracking("cr123_emailopen", True) is False
    assert table.is_activity is True
    assert table.change_tracking_enabled is True
    assert (table.primary_id, table.primary_name) == ("activityid", "subject")
    assert table.attributes["cr123_eventid"].type == "String"
    assert [k.key_attributes for k in client.metadata.alternate_keys("cr123_emailopen")] == [
        ("cr123_eventid",)
    ]
    navigation = client.metadata.regarding_navigation_property("cr123_emailopen", "contact")
    assert navigation == "regardingobjectid_contact_cr123_emailopen"

    contact = emulator.create_row("contact", {"lastname": "Reader"})
    result = client.upsert(
        table.entity_set_name,
        {"cr123_eventid": "evt-1"},
        {"subject": "Opened", f"{navigation}@odata.bind": f"/contacts({contact})"},
    )
    assert result.created is None
    (row,) = emulator.rows("cr123_emailopen")
    assert row["regardingobjectid"] == contact


def label(text: str) -> dict:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}
        ],
    }


def string_column(schema_name: str, display: str, max_length: int) -> dict:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "AttributeType": "String",
        "AttributeTypeName": {"Value": "StringType"},
        "SchemaName": schema_name,
        "DisplayName": label(display),
        "RequiredLevel": {"Value": "None"},
        "MaxLength": max_length,
        "FormatName": {"Value": "Text"},
    }


def activity_table_definition(logical_name: str, schema_name: str) -> dict:
    primary = string_column("Subject", "Subject", 400)
    primary["IsPrimaryName"] = True
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": schema_name,
        "LogicalName": logical_name,
        "DisplayName": label("Email open"),
        "DisplayCollectionName": label("Email opens"),
        "Description": label("A Campaign email was opened"),
        "OwnershipType": "UserOwned",
        "IsActivity": True,
        "HasActivities": False,
        "HasNotes": False,
        "Attributes": [primary],
    }
