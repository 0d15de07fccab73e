"""The production Campaign clients (IMS, REST, I/O Events journal) against the Campaign emulator over
real loopback sockets."""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from emulators.common import FaultConfig
from shared.acs.errors import JournalPositionExpired
from shared.acs.events import parse_timestamp
from shared.errors import AuthenticationError, ConnectionFailedError, NotFoundError, RequestRejectedError
from shared.http import RetryPolicy

PROFILES = "profileAndServicesExt/profile"
VEHICLES = "profileAndServicesExt/cusVehicle"
CAMPAIGN_CODE = re.compile(r"^(RST|XTK|PGS)-\d+$")
KINDS = ("send", "open", "click", "bounce")


def read_journal(reader, since=None):
    """All batches until the journal's 204, as (positions, events)."""
    positions, events = [], []
    for batch in reader.iter_batches(since):
        positions.extend(e.position for e in batch.events)
        events.extend(batch.events)
    return positions, events


# -- IMS ----------------------------------------------------------------------------------------


def test_one_token_serves_a_thousand_calls_from_sixteen_threads(emu, make_client):
    pkey = emu.put_profile({"email": "ann@example.com", "externalId": "c-1"})
    client = make_client(emu, max_concurrency=8)

    with ThreadPoolExecutor(16) as pool:
        records = list(pool.map(lambda _: client.get(PROFILES, pkey), range(1000)))

    assert all(r["PKey"] == pkey for r in records)
    assert emu.tokens_issued == 1


def test_expired_token_is_refreshed_once_and_the_call_succeeds(emu, make_client):
    pkey = emu.put_profile({"email": "ann@example.com"})
    client = make_client(emu)
    client.get(PROFILES, pkey)

    emu.advance_time(86400 + 60)

    assert client.get(PROFILES, pkey)["email"] == "ann@example.com"
    assert emu.tokens_issued == 2
    assert client.get(PROFILES, pkey)["PKey"] == pkey
    assert emu.tokens_issued == 2


def test_bad_secret_is_an_authentication_error_naming_ims_reason(emu, make_client, make_ims):
    client = make_client(emu, make_ims(emu, secret="wrong-secret-not-real"))

    with pytest.raises(AuthenticationError) as caught:
        client.get(PROFILES, "@any")

    assert caught.value.code == "invalid_client"
    assert "wrong-secret-not-real" not in f"{caught.value} {caught.value.body}"
    assert emu.tokens_issued == 0


# -- REST ---------------------------------------------------------------------------------------


def test_paging_2500_profiles_by_1000_reads_three_pages_with_every_profile_once(emu, make_client):
    for i in range(2500):
        emu.put_profile({"email": f"p{i}@example.com", "externalId": f"c-{i}"})
    client = make_client(emu)

    pages = list(client.iter_pages(PROFILES, line_count=1000))

    assert [len(page) for page in pages] == [1000, 1000, 500]
    seen = [record["PKey"] for page in pages for record in page]
    assert len(set(seen)) == 2500
    assert set(seen) == {row["PKey"] for row in emu.snapshot("profile")}
    assert client.stats["requests"] == 3


def test_lookup_by_custom_key_and_by_builtin_email_filter(emu, make_client):
    pkey = emu.put_profile({"email": "ann@example.com", "externalId": "c-1"})
    emu.put_profile({"email": "bob@example.com", "externalId": "c-2"})
    client = make_client(emu)

    found = client.find_one_by_key(PROFILES, "byExternalId", "externalId", "c-1")
    by_email = client.find_by(PROFILES, "byEmail", {"email": "ann@example.com"}, custom=False)

    assert found["PKey"] == pkey
    assert [r["PKey"] for r in by_email] == [pkey]
    assert client.find_one_by_key(PROFILES, "byExternalId", "externalId", "c-404") is None


def test_linked_custom_resource_create_and_lookup_by_its_key(emu, make_client):
    owner = emu.put_profile({"email": "ann@example.com", "externalId": "c-1"})
    client = make_client(emu)

    created = client.create(
        VEHICLES,
        {"externalId": "v-1", "vehicleName": "Roadster", "modelYear": 2024, "profile": {"PKey": owner}},
    )
    found = client.find_one_by_key(VEHICLES, "byExternalId", "externalId", "v-1")

    assert found["PKey"] == created["PKey"]
    assert found["vehicleName"] == "Roadster"
    assert found["profile"]["PKey"] == owner


def test_create_patch_delete_round_trip(emu, make_client):
    client = make_client(emu)

    created = client.create(PROFILES, {"email": "ann@example.com", "firstName": "Ann", "externalId": "c-1"})
    patched = client.patch(PROFILES, created["PKey"], {"firstName": "Anna", "location": {"city": "Paris"}})
    stored = client.get(PROFILES, created["PKey"])
    client.delete(PROFILES, created["PKey"])

    assert set(patched) == {"PKey", "href"}
    assert patched["PKey"] == created["PKey"]
    assert (stored["firstName"], stored["location"]["city"]) == ("Anna", "Paris")
    assert client.get(PROFILES, created["PKey"]) is None
    assert emu.snapshot("profile") == []
    client.delete(PROFILES, created["PKey"])  # a resent delete finds nothing and is fine
    assert emu.engine_calls["insert"] == 1
    assert emu.engine_calls["delete"] >= 1


def test_campaign_data_error_is_rejected_with_its_campaign_code_and_not_retried(emu, make_client):
    pkey = emu.put_profile({"email": "ann@example.com"})
    client = make_client(emu)

    with pytest.raises(RequestRejectedError) as caught:
        client.patch(PROFILES, pkey, {"email": "not an email"})

    assert CAMPAIGN_CODE.match(caught.value.code)
    assert caught.value.status == 500
    assert not caught.value.retriable
    assert client.stats["retries"] == 0


def test_unknown_pkey_is_not_found_on_patch_and_none_on_get(emu, make_client):
    client = make_client(emu)
    emu.put_profile({"email": "ann@example.com"})
    unknown = "@" + "x" * 40

    with pytest.raises(NotFoundError):
        client.patch(PROFILES, unknown, {"firstName": "Nobody"})
    assert client.get(PROFILES, unknown) is None


def test_throttled_calls_all_succeed_within_the_client_concurrency(emulator_factory, make_client):
    emu = emulator_factory(requests_per_second=40, max_concurrency=4)
    pkey = emu.put_profile({"email": "ann@example.com"})
    retry = RetryPolicy(total=10, retry_after_max=1.0)
    client = make_client(emu, max_concurrency=4, retry=retry)

    with ThreadPoolExecutor(16) as pool:
        records = list(pool.map(lambda _: client.get(PROFILES, pkey), range(120)))

    assert len(records) == 120 and all(r["PKey"] == pkey for r in records)
    assert emu.limit.peak_in_flight <= 4
    assert client.stats["throttled"] > 0


def test_large_tables_page_only_when_pagination_is_forced(emulator_factory, make_client, caplog):
    emu = emulator_factory(big_table_threshold=100)
    for i in range(120):
        emu.put_profile({"email": f"p{i}@example.com"})
    client = make_client(emu)

    unforced = list(client.iter_pages(PROFILES, line_count=50))
    forced = list(client.iter_pages(PROFILES, line_count=50, force_pagination=True))

    assert [len(page) for page in unforced] == [50]
    assert "may be truncated" in caplog.text
    assert [len(page) for page in forced] == [50, 50, 20]


def test_a_create_whose_connection_dropped_is_not_resent_and_is_reconciled_by_key(emu, make_client):
    client = make_client(emu)
    client.find_by(PROFILES, "byEmail", {"email": "warm-up@example.com"}, custom=False)  # token minted
    sent_before = client.stats["requests"]
    emu.faults.configure(FaultConfig(drop_rate=1.0))

    with pytest.raises(ConnectionFailedError) as caught:
        client.create(PROFILES, {"email": "ann@example.com", "externalId": "c-1"})

    assert caught.value.may_have_applied
    assert client.stats["requests"] == sent_before + 1
    emu.faults.configure(FaultConfig())
    if client.find_one_by_key(PROFILES, "byExternalId", "externalId", "c-1") is None:
        client.create(PROFILES, {"email": "ann@example.com", "externalId": "c-1"})
    assert len(emu.find("profile", externalId="c-1")) == 1


def test_reads_ride_out_injected_gateway_errors_and_dropped_connections(emu, make_client):
    pkey = emu.put_profile({"email": "ann@example.com"})
    client = make_client(emu)
    client.get(PROFILES, pkey)
    emu.faults.configure(FaultConfig(error_rate=0.3, drop_rate=0.1, seed=11))

    records = [client.get(PROFILES, pkey) for _ in range(40)]

    assert all(r["PKey"] == pkey for r in records)
    assert client.stats["retries"] > 0


def test_changed_since_pages_through_profiles_modified_after_a_moment_oldest_first(emu, make_client):
    client = make_client(emu)
    old = [emu.put_profile({"email": f"old{i}@example.com"}) for i in range(3)]
    emu.advance_time(60)
    cutoff_record = client.get(PROFILES, emu.put_profile({"email": "new0@example.com"}))
    emu.advance_time(1)
    emu.update_profile(old[0], {"firstName": "Touched"})
    since = parse_timestamp(cutoff_record["lastModified"])

    changed = [r for page in client.iter_changed_since(PROFILES, since, line_count=2) for r in page]

    assert [r["email"] for r in changed] == ["new0@example.com", "old0@example.com"]


# -- I/O Events journal -------------------------------------------------------------------------


def email_events(n: int, recipients: list[str]) -> list[dict]:
    """Campaign email events in the emulator's documented envelope, cycling through types and profiles."""
    return [
        {
            "specversion": "1.0",
            "id": f"ev-{i:04d}",
            "type": f"com.adobe.campaign.standard.email.{KINDS[i % 4]}",
            "time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
            "data": {"eventType": KINDS[i % 4], "profile": {"recipientId": recipients[i % len(recipients)]}},
        }
        for i in range(n)
    ]


def test_journal_reads_every_event_across_pages_then_stops_on_204(emu, make_reader):
    events = email_events(250, ["@r1", "@r2", "@r3"])
    positions_published = emu.publish_events(events, duplicate_rate=0.1, shuffle_seed=7)
    reader = make_reader(emu, limit=100)

    positions, parsed = read_journal(reader)

    assert len(positions_published) > 250  # duplicates were injected
    assert sorted(positions) == sorted(positions_published)
    assert {e.event_id for e in parsed} == {e["id"] for e in events}
    assert max(Counter(e.event_id for e in parsed).values()) == 2
    assert reader.retry_after == 10
    assert reader.end_position == positions[-1]
    assert all(e.type == KINDS[int(e.event_id[3:]) % 4] for e in parsed)
    assert all(e.timestamp is not None and e.recipient_id for e in parsed)


def test_journal_resumes_from_a_saved_position_without_loss_or_repeats(emu, make_reader):
    published = emu.publish_events(email_events(230, ["@r1"]), duplicate_rate=0.2, shuffle_seed=1)

    first_run = make_reader(emu, limit=50)
    seen: list[str] = []
    saved = None
    for batch in first_run.iter_batches(None):
        seen.extend(e.position for e in batch.events)
        saved = batch.position
        if len(seen) >= 100:
            break  # the process stops after durably handling two batches
    rest, _ = read_journal(make_reader(emu, limit=50), since=saved)

    assert len(seen) == 100
    assert seen + rest == published


def test_journal_expired_position_raises_then_restart_from_oldest_reads_new_events(emu, make_reader):
    for i in range(5):
        emu.put_profile({"email": f"p{i}@example.com", "externalId": f"c-{i}"})
    emu.generate_events(30, seed=5)  # generates and publishes
    reader = make_reader(emu, limit=10)
    saved = next(iter(reader.iter_batches(None))).position

    emu.advance_time(8 * 86400)
    fresh = emu.generate_events(4, seed=6)

    with pytest.raises(JournalPositionExpired) as caught:
        read_journal(reader, since=saved)
    assert caught.value.position == saved
    _, restarted = read_journal(reader, since=None)
    assert [e.event_id for e in restarted] == [e["id"] for e in fresh]


def test_journal_latest_skips_old_events_and_hands_back_the_position_to_continue_from(emu, make_reader):
    emu.put_profile({"email": "ann@example.com", "externalId": "c-1"})
    emu.generate_events(5, seed=8)
    reader = make_reader(emu)

    assert list(reader.iter_batches(None, latest=True)) == []
    end = reader.end_position
    newer = emu.generate_events(3, seed=9)

    _, parsed = read_journal(reader, since=end)
    assert [e.event_id for e in parsed] == [e["id"] for e in newer]
