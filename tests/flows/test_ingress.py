"""Ingress end to end: Dataverse emulator → contacts_sync / webhook_d365 entry points → Campaign emulator,
with state in Azurite. Campaign's final state is compared with an oracle computed from Dataverse's rows."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import requests
from azure.functions.timer import TimerRequest

import contacts_sync
from emulators.common import FaultConfig
from emulators.funchost import FunctionHost
from emulators.stack import VEHICLE_MAPPING
from shared.flows.ingress import ReplayRefused
from shared.store import LedgerRecord, RecordStatus
from tests.builders.sync_config import NOWHERE, filtered_contacts_mapping, sync_config
from tests.d365.fixtures.webhook_bodies import context, entity, to_wire, wcf_date

CONFIG = sync_config(
    filtered_contacts_mapping(
        {"d365": "address1_postalcode", "acs": "location.zipCode"},
        {"d365": "preferredcontactmethodcode", "acs": "cusPreferredChannel"},
    ),
    VEHICLE_MAPPING,
)
GENDER_BY_CODE = {1: "male", 2: "female"}
CHANNEL = {1: "Any", 2: "Email", 3: "Phone", 4: "Fax", 5: "Mail"}
MODEL = {100000000: "Sedan", 100000001: "Hatchback", 100000002: "SUV", 100000003: "Van"}


def expected_profiles(dataverse, *, email_as_created: dict[str, str] | None = None) -> dict[str, dict]:
    """Campaign profiles as the mapping should leave them, keyed by externalId (the oracle)."""
    expected = {}
    for row in dataverse.rows("contact"):
        if row.get("address1_city") == NOWHERE:
            continue
        contact_id = row["contactid"].lower()
        expected[contact_id] = {
            "firstName": row.get("firstname") or "",
            "lastName": row.get("lastname") or "",
            "email": (email_as_created or {}).get(contact_id, row.get("emailaddress1") or ""),
            "city": row.get("address1_city") or "",
            "zipCode": row.get("address1_postalcode") or "",
            "gender": GENDER_BY_CODE.get(row.get("gendercode"), "unknown"),
            "cusPreferredChannel": CHANNEL.get(row.get("preferredcontactmethodcode"), ""),
        }
    return expected


def actual_profiles(campaign) -> dict[str, dict]:
    actual = {}
    for profile in campaign.snapshot("profile"):
        assert profile["externalId"] not in actual, f"duplicate profile for {profile['externalId']}"
        actual[profile["externalId"]] = {
            "firstName": profile.get("firstName") or "",
            "lastName": profile.get("lastName") or "",
            "email": profile.get("email") or "",
            "city": (profile.get("location") or {}).get("city") or "",
            "zipCode": (profile.get("location") or {}).get("zipCode") or "",
            "gender": profile.get("gender") or "unknown",
            "cusPreferredChannel": profile.get("cusPreferredChannel") or "",
        }
    return actual


def assert_campaign_matches(stack, **oracle_options) -> None:
    expected = expected_profiles(stack.dataverse, **oracle_options)
    actual = actual_profiles(stack.campaign)
    assert actual.keys() == expected.keys()
    mismatched = [k for k in expected if actual[k] != expected[k]]
    assert not mismatched, (
        f"{len(mismatched)} profiles differ, e.g. {expected[mismatched[0]]} != {actual[mismatched[0]]}"
    )


def run_contacts_sync() -> None:
    contacts_sync.main(TimerRequest())


def test_initial_load_then_changes_leave_campaign_exactly_like_dynamics(stack, function_app_env):
    contact_ids = stack.dataverse.seed_contacts(5000, seed=7)
    vehicle_ids = [
        stack.dataverse.create_row(
            "cr123_vehicle",
            {
                "cr123_name": f"Car {n}",
                "cr123_vin": f"VIN{n:014d}",
                "cr123_model": 100000000 + n % 4,
                "cr123_price": 10000 + n,
                "cr123_Contact@odata.bind": f"/contacts({contact_ids[n]})",
            },
        )
        for n in range(40)
    ]
    app = function_app_env(CONFIG, D365_PAGE_SIZE="1000")
    run_contacts_sync()
    emails_at_load = {p["externalId"]: p["email"] for p in stack.campaign.snapshot("profile")}
    assert_campaign_matches(stack)
    vehicles = {v["externalId"]: v for v in stack.campaign.snapshot("cusVehicle")}
    assert len(vehicles) == 40
    first = vehicles[vehicle_ids[1].lower()]
    assert (first["vehicleName"], first["model"], first["price"]) == ("Car 1", "Hatchback", 10001.0)
    assert first["ownerContactId"] == contact_ids[1].lower()
    assert stack.campaign.engine_calls["insert"] == 5040
    assert app.store.reports.latest("contacts_sync")["outcome"] == "succeeded"

    # Changes: edits (incl. an email, whose mapping does not apply updates), deletes, filter exits, picklists.
    dv = stack.dataverse
    for n, contact_id in enumerate(contact_ids[:300]):
        dv.update_row(
            "contact",
            contact_id,
            {
                "firstname": f"Edited{n}",
                "emailaddress1": f"new{n}@example.org",
                "gendercode": 1 + n % 2,
                "preferredcontactmethodcode": 1 + n % 5,
            },
        )
    for contact_id in contact_ids[300:350]:
        dv.delete_row("contact", contact_id)
    for contact_id in contact_ids[350:400]:
        dv.update_row("contact", contact_id, {"address1_city": NOWHERE})
    dv.delete_row("cr123_vehicle", vehicle_ids[0])
    stack.campaign.reset_counters()
    run_contacts_sync()

    assert_campaign_matches(stack, email_as_created=emails_at_load)
    assert stack.campaign.engine_calls["update"] == 300
    assert stack.campaign.engine_calls["delete"] == 50 + 50 + 1
    assert stack.campaign.engine_calls["insert"] == 0
    assert len(stack.campaign.snapshot("cusVehicle")) == 39
    counts = app.store.ledger.count_by_status("contacts")
    assert (counts["synced"], counts["deleted"], counts["excluded"]) == (4900, 50, 50)

    # Back into the filter: recreated in Campaign with every field.
    dv.update_row("contact", contact_ids[350], {"address1_city": "Paris"})
    run_contacts_sync()
    assert_campaign_matches(stack, email_as_created=emails_at_load)


def test_unchanged_records_cost_no_campaign_calls_on_a_full_resync(stack, function_app_env):
    stack.dataverse.seed_contacts(1200, seed=3)
    app = function_app_env(CONFIG, D365_PAGE_SIZE="500")
    run_contacts_sync()
    app.store.checkpoints.reset("contacts_sync", "contacts")
    app.store.checkpoints.reset("contacts_sync", "vehicles")
    stack.campaign.reset_counters()
    run_contacts_sync()
    calls = stack.campaign.engine_calls
    assert (calls["insert"], calls["update"], calls["delete"]) == (0, 0, 0)
    # One read per mapping: the "is Campaign empty?" probe at the start of a full load, none per record.
    assert calls["read"] == 2
    assert app.store.reports.latest("contacts_sync")["counts"]["unchanged"] == 1200


class CrashAfter:
    """Wraps the Campaign client: the process 'dies' (BaseException) after `n` creates."""

    class Killed(BaseException):
        pass

    def __init__(self, client, n: int) -> None:
        self._client, self._left, self._lock = client, n, threading.Lock()

    def create(self, resource, body):
        with self._lock:
            self._left -= 1
            if self._left < 0:
                raise self.Killed()
        return self._client.create(resource, body)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_crash_mid_initial_load_resumes_from_the_last_page_without_duplicates(stack, function_app_env):
    stack.dataverse.seed_contacts(3000, seed=11)
    app = function_app_env(CONFIG, D365_PAGE_SIZE="500")
    app.ingress.campaign = CrashAfter(app.campaign, 1250)  # dies inside page 3 of 6
    with pytest.raises(CrashAfter.Killed):
        app.ingress.run()
    checkpoint = app.store.checkpoints.get("contacts_sync", "contacts")
    assert checkpoint.position and "skiptoken" in checkpoint.position.lower()  # saved after page 2

    app.ingress.campaign = app.campaign
    stack.campaign.reset_counters()
    app.ingress.run()
    assert_campaign_matches(stack)
    calls = stack.campaign.engine_calls
    # Page 3 is redone: its 250 records created before the crash are updated at most once more.
    assert calls["insert"] == 3000 - 1250
    assert calls["update"] <= 250


class StuckThenCrash:
    """Wraps the Campaign client: create number `stuck` hangs while `more` later creates are made (the
    next page's among them: two pages are in flight in a full load), then the process dies."""

    def __init__(self, client, stuck: int, more: int) -> None:
        self._client, self._stuck, self._more = client, stuck, more
        self._lock, self._calls, self._done_after = threading.Lock(), 0, 0
        self._enough = threading.Event()

    def create(self, resource, body):
        with self._lock:
            self._calls += 1
            call = self._calls
        if call == self._stuck:
            assert self._enough.wait(timeout=60), "the later creates did not come"
            raise CrashAfter.Killed()
        if call > self._stuck + self._more:
            raise CrashAfter.Killed()
        created = self._client.create(resource, body)
        if call > self._stuck:
            with self._lock:
                self._done_after += 1
                if self._done_after == self._more:
                    self._enough.set()
        return created

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_crash_with_two_pages_in_flight_creates_no_profile_twice_on_resume(stack, function_app_env):
    stack.dataverse.seed_contacts(3000, seed=13)
    app = function_app_env(CONFIG, D365_PAGE_SIZE="500")
    # A record of page 3 hangs while 700 more are created: the rest of page 3 and part of page 4.
    app.ingress.campaign = StuckThenCrash(app.campaign, stuck=1001, more=700)
    with pytest.raises(CrashAfter.Killed):
        app.ingress.run()
    assert stack.campaign.engine_calls["insert"] == 1700

    app.ingress.campaign = app.campaign
    stack.campaign.reset_counters()
    app.ingress.run()

    assert_campaign_matches(stack)
    assert stack.campaign.engine_calls["insert"] == 3000 - 1700  # both half-done pages were looked up


class WebhookWritesFirst:
    """Wraps the Campaign client: right after the load creates a chosen contact's profile, a webhook for
    that contact (which found the profile by key) records it in the ledger before the load does."""

    def __init__(self, client, ledger, contact_ids) -> None:
        self._client, self._ledger, self._contact_ids = client, ledger, set(contact_ids)
        self.pkeys: dict[str, str] = {}

    def create(self, resource, body):
        created = self._client.create(resource, body)
        contact_id = body.get("externalId")
        if contact_id in self._contact_ids:
            self.pkeys[contact_id] = created["PKey"]
            self._ledger.save(
                LedgerRecord(
                    "contacts", contact_id, source_version=1, target_key=created["PKey"], content_hash="h"
                )
            )
        return created

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.parametrize("webhooks", [1, 120])
def test_webhooks_recording_contacts_during_a_load_page_win_over_the_pages_ledger_rows(
    stack, function_app_env, webhooks
):
    """One row in the way, or a burst's worth in every transaction of every page (repaired several at a
    time): each record is repaired to the load's content, and no profile is created twice."""
    stack.dataverse.seed_contacts(1200, seed=12)
    app = function_app_env(CONFIG, D365_PAGE_SIZE="500")
    ids = sorted(row["contactid"].lower() for row in stack.dataverse.rows("contact"))
    chosen = ids[700:701] if webhooks == 1 else ids[:: len(ids) // webhooks][:webhooks]
    app.ingress.campaign = WebhookWritesFirst(app.campaign, app.store.ledger, chosen)
    app.ingress.run()

    assert_campaign_matches(stack)
    calls = stack.campaign.engine_calls
    assert calls["insert"] == len(expected_profiles(stack.dataverse))  # none twice
    assert calls["delete"] == 0  # each webhook's record is the profile the load created: nothing undone
    assert set(app.ingress.campaign.pkeys) == set(chosen)
    for contact_id in chosen:
        entry = app.store.ledger.get("contacts", contact_id)
        assert entry.target_key == app.ingress.campaign.pkeys[contact_id]
        assert entry.content_hash != "h"  # decided again after the conflict: the load's content is recorded
    assert app.store.ledger.count_by_status("contacts")["synced"] == len(expected_profiles(stack.dataverse))


def run_until_settled(app, max_runs: int = 8) -> int:
    """Run the timer until no record waits for a retry; backoff time is skipped by making them due."""
    for run in range(1, max_runs + 1):
        run_contacts_sync()
        waiting = [
            entry
            for mapping in ("contacts", "vehicles")
            for entry in app.store.ledger.iter_records(mapping, status=RecordStatus.FAILED)
        ]
        if not waiting:
            return run
        for entry in waiting:
            app.store.ledger.save(entry.evolve(next_attempt_at=datetime.now(UTC)))
    raise AssertionError(f"{len(waiting)} records still failing after {max_runs} runs")


def test_injected_503s_and_429s_on_both_apis_still_give_the_exact_state(stack, function_app_env):
    ids = stack.dataverse.seed_contacts(800, seed=13)
    stack.dataverse.faults.configure(
        FaultConfig(error_rate=0.10, throttle_rate=0.10, retry_after_seconds=0, seed=5)
    )
    stack.campaign.faults.configure(
        FaultConfig(error_rate=0.10, throttle_rate=0.10, retry_after_seconds=0, seed=6)
    )
    app = function_app_env(CONFIG, D365_PAGE_SIZE="300")
    run_until_settled(app)
    for contact_id in ids[:200]:
        stack.dataverse.update_row("contact", contact_id, {"lastname": "Changed"})
    run_until_settled(app)
    assert_campaign_matches(stack)
    assert stack.campaign.faults.counts["error"] > 0 and stack.dataverse.faults.counts["throttle"] > 0
    # Ambiguous failures (a 502 to a create) were settled by looking the record up, never by a second create.
    assert len(stack.campaign.snapshot("profile")) == 800


# -- webhooks ---------------------------------------------------------------------------------------


@pytest.fixture
def host(stack, function_app_env):
    function_app_env(CONFIG)
    with FunctionHost(run_timers=False) as running:
        yield running


def webhook_url(host) -> str:
    return f"{host.base_url}/api/webhook_d365?code={host.function_key}"


def register_webhook(dataverse, url: str, attributes: str) -> None:
    """What `d365 setup` does, by hand: a WebhookKey endpoint and async Update/Delete steps for contact."""
    api = dataverse.api_url
    session = requests.Session()
    session.verify = dataverse.ca_bundle
    token = session.post(
        f"{dataverse.authority}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "11111111-1111-1111-1111-111111111111",
            "client_secret": "local-dev-secret-not-real",
            "scope": dataverse.scope,
        },
        verify=dataverse.ca_bundle,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    base, code = url.split("?code=")
    endpoint = session.post(
        f"{api}serviceendpoints",
        headers=headers,
        verify=dataverse.ca_bundle,
        json={
            "name": "acs-sync",
            "contract": 8,
            "authtype": 4,
            "authvalue": code,
            "url": base,
            "messageformat": 2,
        },
    )
    endpoint_id = endpoint.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    for message in ("Update", "Delete"):
        message_id = session.get(
            f"{api}sdkmessages?$filter=name eq '{message}'", headers=headers, verify=dataverse.ca_bundle
        ).json()["value"][0]["sdkmessageid"]
        filter_id = session.get(
            f"{api}sdkmessagefilters?$filter=primaryobjecttypecode eq 'contact' and _sdkmessageid_value eq "
            f"{message_id}",
            headers=headers,
            verify=dataverse.ca_bundle,
        ).json()["value"][0]["sdkmessagefilterid"]
        step = session.post(
            f"{api}sdkmessageprocessingsteps",
            headers=headers,
            verify=dataverse.ca_bundle,
            json={
                "name": f"acs-sync {message} contact",
                "mode": 1,
                "stage": 40,
                "rank": 1,
                "filteringattributes": attributes if message == "Update" else None,
                "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
                "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
                "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
            },
        )
        assert step.status_code in (201, 204), step.text


def test_a_dynamics_update_reaches_campaign_through_the_real_webhook_delivery(stack, host):
    ids = stack.dataverse.seed_contacts(50, seed=5)
    run_contacts_sync()
    register_webhook(stack.dataverse, webhook_url(host), "firstname,lastname,address1_city")
    stack.dataverse.update_row("contact", ids[0], {"firstname": "Webhooked", "address1_city": "Oslo"})
    stack.dataverse.delete_row("contact", ids[1])
    stack.dataverse.wait_for_deliveries(timeout=20)
    assert_campaign_matches(stack)
    assert host.invocations["webhook_d365"] == 2
    assert not stack.dataverse.system_jobs()


def post(host, body, *, code: str | None = None, headers: dict | None = None) -> requests.Response:
    key = host.function_key if code is None else code
    data = body if isinstance(body, bytes) else to_wire(body)
    return requests.post(
        f"{host.base_url}/api/webhook_d365?code={key}",
        data=data,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=30,
    )


def webhook_body(message: str, table: str, record_id: str, *, target=None, operation_id: str = "op") -> dict:
    body = context(message, table, record_id, target=target, created_on=wcf_date(datetime.now(UTC)))
    body["OperationId"] = operation_id
    return body


def update_context(contact_id: str, version: int, operation: str, **attributes) -> dict:
    """An Update without a post image: the flow must read the mapped columns from the row itself."""
    target = entity("contact", contact_id, attributes={**attributes}, row_version=str(version))
    return webhook_body("Update", "contact", contact_id, target=target, operation_id=operation)


def profile_of(stack, contact_id: str) -> dict:
    return next(p for p in stack.campaign.snapshot("profile") if p["externalId"] == contact_id.lower())


def test_webhook_duplicates_stale_versions_and_bad_requests_leave_campaign_correct(stack, host):
    contact_id = stack.dataverse.seed_contacts(3, seed=9)[0]
    run_contacts_sync()
    current = stack.dataverse.get_row("contact", contact_id)
    version = int(current["versionnumber"])

    stack.dataverse.update_row("contact", contact_id, {"firstname": "Newest"})
    newest = int(stack.dataverse.get_row("contact", contact_id)["versionnumber"])
    fresh = update_context(contact_id, newest, "op-new", firstname="Newest")
    assert post(host, fresh).json()["outcome"] == "updated"
    assert post(host, fresh).json()["outcome"] == "duplicate"
    stale = update_context(contact_id, version, "op-old", firstname="Older")
    assert post(host, stale).json()["outcome"] == "stale"
    assert profile_of(stack, contact_id)["firstName"] == "Newest"

    calls_before = dict(stack.campaign.engine_calls)
    bad_json = post(host, b"{not json")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    no_id = post(host, {"MessageName": "Update", "PrimaryEntityName": "contact"})
    assert no_id.status_code == 400 and "PrimaryEntityId" in no_id.json()["error"]
    assert post(host, fresh, code="wrong-key").status_code == 401
    oversized = post(host, b"{" + b" " * 1_100_000 + b"}")
    assert oversized.status_code == 413
    account = webhook_body(
        "Update", "account", contact_id, target=entity("account", contact_id, attributes={})
    )
    unmapped = post(host, account)
    assert unmapped.status_code == 200 and unmapped.json()["outcome"] == "ignored"
    assert stack.campaign.engine_calls == calls_before
    assert profile_of(stack, contact_id)["firstName"] == "Newest"


def test_a_size_exceeded_webhook_rereads_the_row(stack, host):
    contact_id = stack.dataverse.seed_contacts(2, seed=4)[0]
    run_contacts_sync()
    stack.dataverse.update_row("contact", contact_id, {"lastname": "FromTheRow"})
    body = webhook_body("Update", "contact", contact_id, operation_id="op-big")
    for key in ("InputParameters", "PreEntityImages", "PostEntityImages", "ParentContext"):
        body.pop(key, None)
    answer = post(host, body, headers={"x-ms-dynamics-msg-size-exceeded": "true"})
    assert answer.status_code == 200 and answer.json()["outcome"] == "updated"
    assert profile_of(stack, contact_id)["lastName"] == "FromTheRow"


def test_a_webhook_whose_campaign_write_fails_is_parked_for_the_timer(stack, host):
    contact_id = stack.dataverse.seed_contacts(2, seed=8)[0]
    run_contacts_sync()
    stack.dataverse.update_row("contact", contact_id, {"firstname": "Later"})
    version = int(stack.dataverse.get_row("contact", contact_id)["versionnumber"])
    stack.campaign.faults.configure(FaultConfig(error_rate=1.0))
    answer = post(host, update_context(contact_id, version, "op-park", firstname="Later"))
    assert answer.status_code == 202 and answer.json()["outcome"] == "failed"
    ledger = host_app_ledger()
    entry = ledger.get("contacts", contact_id.lower())
    assert entry.status == RecordStatus.FAILED and entry.attempts == 1
    stack.campaign.faults.configure(FaultConfig())
    ledger.save(entry.evolve(next_attempt_at=entry.first_failed_at))  # make it due now
    run_contacts_sync()
    assert profile_of(stack, contact_id)["firstName"] == "Later"
    assert ledger.get("contacts", contact_id.lower()).status == RecordStatus.SYNCED


def host_app_ledger():
    from shared.app import get_app

    return get_app().store.ledger


def test_a_record_campaign_rejects_goes_to_dead_letters_with_campaigns_error(stack, function_app_env):
    ids = stack.dataverse.seed_contacts(5, seed=31)
    stack.dataverse.update_row("contact", ids[0], {"emailaddress1": "not-an-address"})
    app = function_app_env(CONFIG)
    run_contacts_sync()
    letter = app.store.deadletters.get("contacts_sync", "contacts", ids[0].lower())
    assert letter is not None and letter.error["type"] == "RequestRejectedError"
    assert letter.error["code"].startswith(("XTK-", "PGS-", "RST-"))
    assert letter.payload["email"] == "not-an-address"
    assert app.store.ledger.get("contacts", ids[0].lower()).status == RecordStatus.DEAD
    assert len(stack.campaign.snapshot("profile")) == 4
    assert app.store.reports.latest("contacts_sync")["outcome"] == "partial"

    # Fixed at the source: the next sync writes it and its dead letter goes away.
    stack.dataverse.update_row("contact", ids[0], {"emailaddress1": "fixed@example.org"})
    run_contacts_sync()
    assert profile_of(stack, ids[0])["email"] == "fixed@example.org"
    assert app.store.deadletters.get("contacts_sync", "contacts", ids[0].lower()) is None


def test_a_record_failing_again_and_again_is_dead_lettered_after_the_last_attempt(stack, function_app_env):
    contact_id = stack.dataverse.seed_contacts(1, seed=32)[0]
    app = function_app_env(CONFIG, RETRY_MAX_ATTEMPTS="3")
    run_contacts_sync()
    stack.dataverse.update_row("contact", contact_id, {"firstname": "NeverArrives"})
    stack.campaign.faults.configure(FaultConfig(error_rate=1.0))
    run_contacts_sync()
    for _ in range(2):
        entry = app.store.ledger.get("contacts", contact_id.lower())
        assert entry.status == RecordStatus.FAILED
        app.store.ledger.save(entry.evolve(next_attempt_at=datetime.now(UTC)))
        run_contacts_sync()
    entry = app.store.ledger.get("contacts", contact_id.lower())
    assert (entry.status, entry.attempts) == (RecordStatus.DEAD, 3)
    assert app.store.deadletters.get("contacts_sync", "contacts", contact_id.lower()) is not None


def test_an_expired_delta_token_triggers_a_full_resync_with_a_warning(stack, function_app_env):
    ids = stack.dataverse.seed_contacts(30, seed=33)
    app = function_app_env(CONFIG)
    run_contacts_sync()
    stack.dataverse.update_row("contact", ids[0], {"lastname": "AfterExpiry"})
    stack.dataverse.advance_time(8 * 86400)  # past the organisation's 7-day change-tracking retention
    stack.campaign.reset_counters()
    run_contacts_sync()
    report = app.store.reports.latest("contacts_sync")
    assert report["counts"]["resyncs"] == 2  # both mappings
    assert any("delta token expired" in note for note in report["notes"])
    assert profile_of(stack, ids[0])["lastName"] == "AfterExpiry"
    assert stack.campaign.engine_calls["update"] == 1  # the resync skips the unchanged rows


def test_a_replay_rewrites_every_field_once_and_is_refused_above_the_limit(stack, function_app_env):
    ids = stack.dataverse.seed_contacts(40, seed=34)
    app = function_app_env(CONFIG)
    run_contacts_sync()
    stack.dataverse.update_row("contact", ids[0], {"emailaddress1": "changed@example.org"})
    app.ingress.request_replay("contacts")
    stack.campaign.reset_counters()
    run_contacts_sync()
    assert stack.campaign.engine_calls["update"] == 40
    assert profile_of(stack, ids[0])["email"] == "changed@example.org"  # apply_updates off: replay writes it
    stack.campaign.reset_counters()
    run_contacts_sync()
    assert stack.campaign.engine_calls["update"] == 0  # the replay happened once

    app.ingress.options = replace(app.ingress.options, replay_max_rows=10)
    with pytest.raises(ReplayRefused, match="40 rows ≥ REPLAY_MAX_ROWS"):
        app.ingress.request_replay("contacts")
