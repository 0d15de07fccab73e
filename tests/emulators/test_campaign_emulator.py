"""The Campaign + IMS + I/O Events emulator, called over HTTP as the production clients call it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from emulators.campaign import CampaignEmulator, DataError
from emulators.common import FaultConfig

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
ORG_ID = "TESTORG@AdobeOrg"


def make_emulator(**options) -> CampaignEmulator:
    return CampaignEmulator(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, org_id=ORG_ID, **options
    ).start()


@pytest.fixture
def emu():
    emulator = make_emulator()
    yield emulator
    emulator.stop()


def get_token(emulator: CampaignEmulator) -> str:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    response = requests.post(emulator.ims_token_url, data={**form, "scope": "openid,AdobeID,campaign_sdk"})
    assert response.status_code == 200
    return response.json()["access_token"]


@pytest.fixture
def api(emu):
    """A session carrying what every Campaign call needs."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {get_token(emu)}", "X-Api-Key": CLIENT_ID})
    yield session
    session.close()


def profiles_url(emulator: CampaignEmulator, suffix: str = "") -> str:
    return f"{emulator.campaign_url}/profileAndServicesExt/profile{suffix}"


def journal_headers(emulator: CampaignEmulator, token: str, org: str = ORG_ID) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "x-api-key": CLIENT_ID, "x-ims-org-id": org}


# -- IMS and the gateway --------------------------------------------------------------------------------


def test_ims_issues_a_bearer_token_with_its_lifetime_in_seconds_and_counts_it(emu):
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    body = requests.post(emu.ims_token_url, data=form).json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86399
    assert body["access_token"]
    assert emu.tokens_issued == 1


def test_ims_refuses_a_wrong_secret_and_a_missing_grant(emu):
    wrong = requests.post(
        emu.ims_token_url,
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "nope"},
    )
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "invalid_client", "error_description": "invalid client_secret parameter"}
    missing = requests.post(emu.ims_token_url, data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert missing.status_code == 400
    assert emu.tokens_issued == 0


def test_an_expired_token_is_refused_with_gateway_code_401013(emu, api):
    assert api.get(profiles_url(emu)).status_code == 200
    emu.advance_time(86400)
    response = api.get(profiles_url(emu))
    assert response.status_code == 401
    assert response.json() == {"error_code": "401013", "message": "Oauth token is not valid"}


def test_a_missing_or_wrong_api_key_is_refused_with_403000(emu):
    token = get_token(emu)
    for headers in (
        {"Authorization": f"Bearer {token}"},
        {"Authorization": f"Bearer {token}", "X-Api-Key": "x"},
    ):
        response = requests.get(profiles_url(emu), headers=headers)
        assert response.status_code == 403
        assert response.json() == {"error_code": "403000", "message": "Api Key is invalid"}


# -- profile CRUD ---------------------------------------------------------------------------------------


def test_create_get_patch_delete_answer_like_campaign_and_each_costs_one_engine_call(emu, api):
    created = api.post(
        profiles_url(emu), json={"email": "ann@example.com", "externalId": "c-1", "cusTier": "gold"}
    )
    assert created.status_code == 201
    profile = created.json()
    pkey = profile["PKey"]
    assert profile["href"] == profiles_url(emu, f"/{pkey}")
    assert profile["cusTier"] == "gold"
    assert profile["gender"] == "unknown"
    assert profile["created"] == profile["lastModified"]

    assert api.get(profile["href"]).json()["email"] == "ann@example.com"
    patched = api.patch(profile["href"], json={"firstName": "Ann", "location": {"city": "Lyon"}})
    assert patched.status_code == 200
    assert patched.json() == {"PKey": pkey, "href": profile["href"]}
    stored = emu.find("profile", externalId="c-1")[0]
    assert (stored["firstName"], stored["location"]["city"]) == ("Ann", "Lyon")

    assert api.delete(profile["href"]).status_code == 200
    missing = api.get(profile["href"])
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RST-360011"
    assert emu.engine_calls == {"insert": 1, "update": 1, "delete": 1, "read": 2, "total": 5}
    emu.reset_counters()
    assert emu.engine_calls["total"] == 0


def test_the_standard_endpoint_hides_custom_fields_and_refuses_to_write_them(emu, api):
    emu.put_profile({"email": "bob@example.com", "cusTier": "silver"})
    listed = api.get(f"{emu.campaign_url}/profileAndServices/profile").json()["content"]
    assert "cusTier" not in listed[0]
    assert listed[0]["href"].startswith(f"{emu.campaign_url}/profileAndServices/profile/@")
    refused = api.post(f"{emu.campaign_url}/profileAndServices/profile", json={"cusTier": "gold"})
    assert refused.status_code == 500
    assert refused.json()["error_code"] == "XTK-170036"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"email": "not-an-address"}, "XTK-170006"),
        ({"externalId": "x" * 101}, "PGS-220000"),
        ({"nickname": "Al"}, "XTK-170036"),
        ({"blackListEmail": "yes"}, "XTK-170006"),
        ({"gender": "other"}, "XTK-170006"),
        ({"birthDate": "22/11/1990"}, "XTK-170006"),
        ({"location": {"planet": "Mars"}}, "XTK-170036"),
    ],
)
def test_data_errors_answer_500_with_campaigns_error_body(emu, api, body, code):
    response = api.post(profiles_url(emu), json=body)
    assert response.status_code == 500
    error = response.json()
    assert error["code"] == 500
    assert error["error_code"] == code
    assert error["message"].startswith(
        "RST-360011 An error has occurred - please contact your administrator."
    )
    assert error["logId"]
    assert emu.snapshot() == []


def test_a_duplicate_external_id_is_refused_on_create_and_on_patch(emu, api):
    api.post(profiles_url(emu), json={"externalId": "c-1"})
    other = api.post(profiles_url(emu), json={"externalId": "c-2"}).json()
    duplicate = api.post(profiles_url(emu), json={"externalId": "c-1"})
    assert duplicate.status_code == 500
    assert duplicate.json()["error_code"] == "PGS-220000"
    assert "duplicate key" in duplicate.json()["message"]
    assert api.patch(other["href"], json={"externalId": "c-1"}).status_code == 500
    assert len(emu.snapshot()) == 2


def test_opt_out_timestamps_move_only_when_their_flag_changes(emu, api):
    created = api.post(profiles_url(emu), json={"email": "c@example.com", "blackListEmail": True}).json()
    assert created["blackListEmailLastModified"] == created["created"]
    assert created["blackListAllLastModified"] == ""
    emu.advance_time(10)  # distinct timestamps without waiting
    api.patch(created["href"], json={"blackListEmail": True, "blackList": True})
    after_first = api.get(created["href"]).json()
    assert after_first["blackListEmailLastModified"] == created["blackListEmailLastModified"]
    assert after_first["blackListAllLastModified"] == after_first["lastModified"] > created["lastModified"]
    emu.advance_time(10)
    emu.update_profile(created["PKey"], {"blackListEmail": False})
    after_user_change = emu.find("profile", email="c@example.com")[0]
    assert after_user_change["blackListEmailLastModified"] == after_user_change["lastModified"]
    assert after_user_change["blackListAllLastModified"] == after_first["blackListAllLastModified"]


def test_a_profile_is_reachable_by_its_custom_key(emu, api):
    pkey = emu.put_profile({"externalId": "contact-42"})
    assert api.get(profiles_url(emu, "/contact-42")).json()["PKey"] == pkey


def test_a_linked_custom_resource_stores_its_link_to_the_profile(emu, api):
    owner = emu.put_profile({"externalId": "c-7"})
    url = f"{emu.campaign_url}/profileAndServicesExt/cusVehicle"
    created = api.post(url, json={"externalId": "v-1", "vehicleName": "Model E", "profile": {"PKey": owner}})
    assert created.status_code == 201
    assert created.json()["profile"]["PKey"] == owner
    found = api.get(f"{url}/byExternalId", params={"externalId_parameter": "v-1"}).json()["content"]
    assert [vehicle["vehicleName"] for vehicle in found] == ["Model E"]
    dangling = api.post(url, json={"externalId": "v-2", "profile": {"PKey": "@unknown"}})
    assert dangling.status_code == 404
    assert emu.engine_calls_by_resource["cusVehicle"]["insert"] == 2


def test_resource_type_describes_the_profile_fields(emu, api):
    described = api.get(f"{emu.campaign_url}/profileAndServices/resourceType/profile").json()
    content = described["content"]
    assert content["externalId"]["length"] == 100
    assert set(content["gender"]["values"]) == {"unknown", "male", "female"}
    assert content["location"]["content"]["countryCode"]["type"] == "string"
    assert described["filters"]["href"].endswith("/resourceType/profile/filters")


# -- listing --------------------------------------------------------------------------------------------


def test_paging_follows_absolute_next_hrefs_to_a_last_page_without_next(emu, api):
    for i in range(23):
        emu.put_profile({"email": f"p{i}@example.com"})
    url, pages, emails = profiles_url(emu, "?_lineCount=5"), 0, []
    while url:
        body = api.get(url).json()
        assert body["serverSidePagination"] is False
        emails += [row["email"] for row in body["content"]]
        url = body.get("next", {}).get("href")
        assert url is None or url.startswith(emu.campaign_url)
        pages += 1
    assert pages == 5
    assert sorted(emails) == sorted(f"p{i}@example.com" for i in range(23))
    assert api.get(profiles_url(emu, "/_count")).json() == {"count": 23}


def test_a_big_table_lists_next_only_when_pagination_is_forced():
    emulator = make_emulator(big_table_threshold=3)
    try:
        for i in range(5):
            emulator.put_profile({"email": f"p{i}@example.com"})
        headers = {"Authorization": f"Bearer {get_token(emulator)}", "X-Api-Key": CLIENT_ID}
        plain = requests.get(profiles_url(emulator, "?_lineCount=2"), headers=headers).json()
        forced = requests.get(
            profiles_url(emulator, "?_lineCount=2&_forcePagination=true"), headers=headers
        ).json()
        assert "next" not in plain
        assert "_forcePagination=true" in forced["next"]["href"]
    finally:
        emulator.stop()


def test_by_email_by_text_and_by_external_id_filters_find_profiles(emu, api):
    emu.put_profile({"email": "Dana@Example.com", "lastName": "Smith", "externalId": "c-1"})
    emu.put_profile({"email": "eve@example.com", "lastName": "Jones", "externalId": "c-2"})
    by_email = api.get(profiles_url(emu, "/byEmail"), params={"email": "dana@example.com"}).json()
    by_text = api.get(profiles_url(emu, "/byText"), params={"text": "jon"}).json()
    by_key = api.get(profiles_url(emu, "/byExternalId"), params={"externalId_parameter": "c-2"}).json()
    nothing = api.get(profiles_url(emu, "/byExternalId"), params={"externalId_parameter": "c-9"}).json()
    assert [p["externalId"] for p in by_email["content"]] == ["c-1"]
    assert [p["externalId"] for p in by_text["content"]] == ["c-2"]
    assert [p["externalId"] for p in by_key["content"]] == ["c-2"]
    assert nothing["content"] == []


def test_modified_since_filter_lists_changes_in_last_modified_order(emu, api):
    first = emu.put_profile({"externalId": "c-1"})
    emu.put_profile({"externalId": "c-2"})
    watermark = emu.find("profile", externalId="c-2")[0]["lastModified"]
    emu.advance_time(1)
    emu.update_profile(first, {"blackListEmail": True})
    emu.put_profile({"externalId": "c-3"})
    url = profiles_url(emu, "/byLastModifiedSince")
    since = api.get(url, params={"since_parameter": watermark, "_order": "lastModified"}).json()["content"]
    newest_first = api.get(profiles_url(emu), params={"_order": "lastModified desc"}).json()["content"]
    assert [p["externalId"] for p in since] == ["c-2", "c-1", "c-3"]
    assert [p["externalId"] for p in newest_first] == ["c-3", "c-1", "c-2"]


# -- limits and faults ----------------------------------------------------------------------------------


def test_the_licence_rate_limit_answers_429_with_retry_after():
    emulator = make_emulator(requests_per_second=2)
    try:
        headers = {"Authorization": f"Bearer {get_token(emulator)}", "X-Api-Key": CLIENT_ID}
        statuses = [requests.get(profiles_url(emulator), headers=headers) for _ in range(3)]
        assert [r.status_code for r in statuses[:2]] == [200, 200]
        assert statuses[2].status_code == 429
        assert int(statuses[2].headers["Retry-After"]) >= 1
        assert statuses[2].json()["error_code"] == "429050"
        assert emulator.limit.rejected["requests"] == 1
    finally:
        emulator.stop()


def test_injected_faults_answer_gateway_errors_without_touching_data():
    emulator = make_emulator(faults=FaultConfig(error_rate=1.0))
    try:
        headers = {"Authorization": f"Bearer {get_token(emulator)}", "X-Api-Key": CLIENT_ID}
        answers = [requests.post(profiles_url(emulator), json={}, headers=headers) for _ in range(2)]
        assert sorted(r.status_code for r in answers) == [502, 503]
        assert all("error_code" in r.json() for r in answers)
        assert emulator.snapshot() == []
        assert emulator.faults.counts["error"] == 2
    finally:
        emulator.stop()


# -- I/O Events journal ---------------------------------------------------------------------------------


def test_the_journal_pages_with_link_next_then_answers_204_with_retry_after(emu):
    emu.publish_events([{"id": f"e{i}", "n": i} for i in range(5)])
    headers = journal_headers(emu, get_token(emu))
    url, seen = f"{emu.journal_url}?limit=2", []
    while True:
        response = requests.get(url, headers=headers)
        if response.status_code == 204:
            break
        body = response.json()
        assert body["_page"] == {"last": body["events"][-1]["position"], "count": len(body["events"])}
        seen += [entry["event"]["id"] for entry in body["events"]]
        url = urljoin(emu.base_url, response.links["next"]["url"])
        assert "limit=2" in url
    assert seen == [f"e{i}" for i in range(5)]
    assert response.headers["retry-after"] == "10"
    assert urljoin(emu.base_url, response.links["next"]["url"]) == url
    emu.publish_events([{"id": "e5"}])
    resumed = requests.get(url, headers=headers).json()
    assert [entry["event"]["id"] for entry in resumed["events"]] == ["e5"]


def test_the_journal_checks_the_organization_and_latest_jumps_to_the_end(emu):
    token = get_token(emu)
    emu.publish_events([{"id": "old"}])
    assert (
        requests.get(emu.journal_url, headers=journal_headers(emu, token, org="OTHER@AdobeOrg")).status_code
        == 403
    )
    latest = requests.get(f"{emu.journal_url}?latest=true", headers=journal_headers(emu, token))
    assert latest.status_code == 204
    emu.publish_events([{"id": "new"}])
    after = requests.get(
        urljoin(emu.base_url, latest.links["next"]["url"]), headers=journal_headers(emu, token)
    )
    assert [entry["event"]["id"] for entry in after.json()["events"]] == ["new"]


def test_a_position_whose_next_events_were_purged_answers_410_gone(emu):
    headers = journal_headers(emu, get_token(emu))
    emu.publish_events([{"id": "a"}, {"id": "b"}])
    first = requests.get(f"{emu.journal_url}?limit=1", headers=headers)
    emu.advance_time(3 * 86400)
    emu.publish_events([{"id": "c"}])
    emu.advance_time(5 * 86400)  # a and b are past the 7-day retention, c is not
    headers = journal_headers(emu, get_token(emu))
    gone = requests.get(urljoin(emu.base_url, first.links["next"]["url"]), headers=headers)
    assert gone.status_code == 410
    assert "expired" in gone.text
    oldest = requests.get(emu.journal_url, headers=headers).json()
    assert [entry["event"]["id"] for entry in oldest["events"]] == ["c"]


def test_duplicated_events_keep_their_id_at_another_position(emu):
    positions = emu.publish_events([{"id": f"e{i}"} for i in range(20)], duplicate_rate=0.5, shuffle_seed=3)
    body = requests.get(f"{emu.journal_url}?limit=100", headers=journal_headers(emu, get_token(emu))).json()
    ids = [entry["event"]["id"] for entry in body["events"]]
    assert len(positions) == len(ids) == len(set(positions)) > 20
    assert set(ids) == {f"e{i}" for i in range(20)}
    assert ids[:20] != [f"e{i}" for i in range(20)]  # shuffled


def test_generated_events_carry_what_the_consumer_needs(emu):
    for i in range(20):
        emu.put_profile({"email": f"p{i}@example.com", "externalId": f"c-{i}"})
    events = emu.generate_events(200, seed=7)
    by_type = {event["data"]["eventType"]: event["data"] for event in events}
    assert set(by_type) == {"send", "open", "click", "bounce"}
    assert by_type["click"]["clickedUrl"].startswith("https://")
    assert by_type["bounce"]["bounce"]["type"] == "hard"
    assert by_type["bounce"]["bounce"]["reason"]
    for event in events:
        data = event["data"]
        assert event["id"] and event["time"] == data["timestamp"]
        assert data["campaign"]["label"] and data["delivery"]["id"] and data["mirrorPageUrl"]
        assert emu.find("profile", PKey=data["profile"]["recipientId"])
    without_key = [e for e in events if "externalId" not in e["data"]["profile"]]
    assert 0 < len(without_key) < len(events)
    assert emu.journal.retained == 200


# -- admin surface and standalone run -------------------------------------------------------------------


def test_the_admin_surface_reports_stats_and_changes_data_without_auth(emu, api):
    created = requests.post(f"{emu.base_url}/_emulator/profiles", json={"email": "f@example.com"})
    pkey = created.json()["PKey"]
    patched = requests.patch(f"{emu.base_url}/_emulator/profiles/{pkey}", json={"ccpaOptOut": True})
    assert patched.status_code == 200
    assert requests.post(f"{emu.base_url}/_emulator/events/generate", json={"n": 3}).json()["count"] == 3
    api.get(profiles_url(emu))
    stats = requests.get(f"{emu.base_url}/_emulator/stats").json()
    assert stats["engine_calls"]["read"] == 1
    assert stats["request_count"] == 1
    assert stats["tokens_issued"] == 1
    assert stats["journal"]["retained"] == 3
    snapshot = requests.get(f"{emu.base_url}/_emulator/snapshot/profile").json()
    assert snapshot[0]["ccpaOptOut"] is True
    bad = requests.patch(f"{emu.base_url}/_emulator/profiles/{pkey}", json={"email": "nope"})
    assert bad.status_code == 400


def test_direct_writes_refuse_what_the_api_refuses(emu):
    with pytest.raises(DataError):
        emu.put_profile({"externalId": "x" * 101})


def test_the_module_runs_standalone_and_prints_its_urls():
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.campaign", "--port", "0", "--profiles", "3", "--events", "2"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls = json.loads(process.stdout.readline())
        assert urls["campaign_url"] == urls["base_url"] + "/acme/campaign"
        stats = requests.get(f"{urls['base_url']}/_emulator/stats").json()
        assert stats["records"]["profile"] == 3
        assert stats["journal"]["published"] == 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
