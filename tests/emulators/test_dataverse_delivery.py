"""How the Dataverse emulator delivers async webhook jobs (in parallel, delayed, out of order, sometimes
twice), the RowVersion it puts in them, and how it answers a change-tracking delta when nothing changed."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter

import pytest

from emulators.dataverse import DataverseEmulator
from tests.emulators import test_dataverse_emulator as base
from tests.emulators.test_dataverse_emulator import CLIENT_ID, SECRET, Receiver, full_sync, receiver_url

# The webhook receiver and step registration fixtures of the emulator's main tests (their `api` uses the
# `emu` below).
api, receiver, register = base.api, base.receiver, base.register

SEED = 11


@pytest.fixture(scope="module")
def emu():
    emulator = DataverseEmulator(client_id=CLIENT_ID, client_secret=SECRET, contacts=25, seed=SEED).start()
    emulator.webhook_retry_delay_seconds = 0
    yield emulator
    emulator.stop()


@pytest.fixture
def knobs(emu):
    """Restores the delivery settings a test changes."""
    saved = {
        name: getattr(emu, name)
        for name in (
            "webhook_workers",
            "webhook_max_delay_seconds",
            "webhook_duplicate_rate",
            "webhook_row_version",
            "empty_delta_response",
        )
    }
    yield emu
    assert emu.wait_for_deliveries(timeout=10)
    for name, value in saved.items():
        setattr(emu, name, value)


def contexts(hook: Receiver) -> list[dict]:
    """The delivered RemoteExecutionContexts, in the order they reached the receiver."""
    return [json.loads(request["raw"]) for request in list(hook.requests)]


def pairs(collection: list[dict]) -> dict:
    return {pair["key"]: pair["value"] for pair in collection}


def target_of(context: dict) -> dict:
    return pairs(context["InputParameters"])["Target"]


def attributes_of(entity: dict) -> dict:
    return pairs(entity["Attributes"])


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- concurrency, delays and duplicates -----------------------------------------------------------------


def test_delayed_async_jobs_for_one_row_arrive_out_of_order_all_of_them_and_some_twice(
    knobs, receiver, register
):
    emu = knobs
    contact = emu.create_row("contact", {"lastname": "Overtaken"})
    register(receiver_url(receiver), message="Update")
    emu.webhook_workers = 6
    emu.webhook_max_delay_seconds = 0.3
    emu.webhook_duplicate_rate = 0.5
    duplicates_before = emu.stats()["webhooks"]["duplicates"]

    for number in range(30):
        emu.update_row("contact", contact, {"firstname": f"v{number:02d}"})
    assert emu.wait_for_deliveries(timeout=15)

    delivered = contexts(receiver)
    arrival = [int(attributes_of(target_of(c))["firstname"][1:]) for c in delivered]
    first_arrivals = list(dict.fromkeys(arrival))
    assert sorted(first_arrivals) == list(range(30))  # every update arrived
    assert first_arrivals != sorted(first_arrivals)  # ... but not in the order they were committed
    inversions = sum(1 for a, b in itertools.pairwise(first_arrivals) if a > b)
    assert inversions >= 1

    per_operation = Counter(c["OperationId"] for c in delivered)
    assert len(per_operation) == 30
    twice = [operation for operation, count in per_operation.items() if count == 2]
    assert twice and max(per_operation.values()) == 2
    assert emu.stats()["webhooks"]["duplicates"] - duplicates_before == len(twice)
    assert len(delivered) == 30 + len(twice)
    for operation in twice:  # a duplicate is the same job: the same body, the same OperationId
        bodies = {
            r["raw"]
            for r, c in zip(receiver.requests, delivered, strict=True)
            if c["OperationId"] == operation
        }
        assert len(bodies) == 1
    assert emu.stats()["webhooks"]["pending"] == 0


def test_no_more_async_deliveries_are_in_flight_than_webhook_workers_even_after_a_change(
    knobs, receiver, register
):
    emu = knobs
    contact = emu.create_row("contact", {"lastname": "Throttled"})
    register(receiver_url(receiver), message="Update")
    for workers in (2, 5):
        emu.webhook_workers = workers
        receiver.requests.clear()
        receiver.release.clear()  # the receiver holds every request until released
        try:
            for number in range(workers + 3):
                emu.update_row("contact", contact, {"firstname": f"w{workers}-{number}"})
            assert wait_until(lambda: len(receiver.requests) >= workers)  # noqa: B023
            time.sleep(0.2)
            assert len(receiver.requests) == workers
        finally:
            receiver.release.set()
        assert emu.wait_for_deliveries(timeout=10)
        assert len(receiver.requests) == workers + 3


def test_one_worker_without_delay_delivers_async_jobs_in_commit_order(knobs, receiver, register):
    emu = knobs
    emu.webhook_workers = 1
    contact = emu.create_row("contact", {"lastname": "Queued"})
    register(receiver_url(receiver), message="Update")
    for number in range(10):
        emu.update_row("contact", contact, {"firstname": f"q{number}"})
    assert emu.wait_for_deliveries(timeout=10)
    names = [attributes_of(target_of(c))["firstname"] for c in contexts(receiver)]
    assert names == [f"q{number}" for number in range(10)]


def test_stopping_does_not_wait_for_delayed_jobs(receiver):
    emulator = DataverseEmulator(
        client_id=CLIENT_ID, client_secret=SECRET, webhook_max_delay_seconds=60, webhook_workers=2
    ).start()
    try:
        steps = emulator.webhooks
        assert steps.workers == 2 and emulator.webhook_max_delay_seconds == 60
        endpoint = emulator.create_row(
            "serviceendpoint",
            {"name": "late", "contract": 8, "url": receiver_url(receiver), "authtype": 4, "authvalue": "k"},
        )
        emulator.create_row(
            "sdkmessageprocessingstep",
            {
                "name": "late create",
                "mode": 1,
                "stage": 40,
                "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint})",
                "sdkmessageid@odata.bind": "/sdkmessages(9ebdbb1b-ea3e-db11-86a7-000a3a5473e8)",
            },
        )
        emulator.create_row("account", {"name": "Never delivered"})
        assert emulator.stats()["webhooks"]["pending"] == 1
        assert not emulator.wait_for_deliveries(timeout=0.2)
    finally:
        started = time.monotonic()
        emulator.stop()
    assert time.monotonic() - started < 3
    assert emulator.stats()["webhooks"]["pending"] == 0 and receiver.requests == []


# -- RowVersion -----------------------------------------------------------------------------------------


def test_deliveries_carry_the_row_version_of_their_own_operation_and_registered_versionnumber(
    knobs, receiver, register
):
    emu = knobs
    image = {"name": "post", "entityalias": "post", "imagetype": 1, "messagepropertyname": "Target"}
    register(
        receiver_url(receiver), message="Create", images=[{**image, "attributes": "lastname,versionnumber"}]
    )
    register(
        receiver_url(receiver),
        message="Update",
        images=[
            {**image, "attributes": "firstname,versionnumber"},
            {**image, "name": "pre", "entityalias": "pre", "imagetype": 0, "attributes": "firstname"},
        ],
    )
    emu.webhook_workers = 1
    receiver.release.clear()  # hold the first delivery: the others are sent after every write committed
    try:
        contact = emu.create_row("contact", {"lastname": "Versioned"})
        versions = {"Versioned": emu.get_row("contact", contact)["versionnumber"]}
        for name in ("r1", "r2", "r3"):
            emu.update_row("contact", contact, {"firstname": name})
            versions[name] = emu.get_row("contact", contact)["versionnumber"]
    finally:
        receiver.release.set()
    assert emu.wait_for_deliveries(timeout=10)
    assert len(set(versions.values())) == 4

    delivered = contexts(receiver)
    assert len(delivered) == 4
    for context in delivered:
        target = target_of(context)
        values = attributes_of(target)
        name = values.get("firstname") or values["lastname"]
        assert target["RowVersion"] == str(versions[name])
        assert "versionnumber" not in values  # the Target holds the written columns, not the version
        post = pairs(context["PostEntityImages"])["post"]
        assert attributes_of(post)["versionnumber"] == versions[name]  # a JSON integer
        assert post["RowVersion"] == str(versions[name])
        if context["MessageName"] == "Update":
            pre = pairs(context["PreEntityImages"])["pre"]
            assert "versionnumber" not in attributes_of(pre)  # not registered on that image
            before = list(versions)[list(versions).index(name) - 1]
            assert pre["RowVersion"] == str(versions[before])  # the image's own (previous) version
        assert pairs(context["ParentContext"]["InputParameters"])["Target"]["RowVersion"] is None

    receiver.requests.clear()
    emu.webhook_row_version = False
    emu.update_row("contact", contact, {"firstname": "r4"})
    assert emu.wait_for_deliveries(timeout=10)
    (context,) = contexts(receiver)
    post = pairs(context["PostEntityImages"])["post"]
    assert target_of(context)["RowVersion"] is None and post["RowVersion"] is None
    assert attributes_of(post)["versionnumber"] == emu.get_row("contact", contact)["versionnumber"]


def test_an_image_without_a_column_list_carries_versionnumber_and_an_async_primary_name_image_the_version(
    knobs, receiver, register
):
    emu = knobs
    register(
        receiver_url(receiver),
        message="Update",
        table="account",
        images=[{"name": "all", "entityalias": "all", "imagetype": 0, "messagepropertyname": "Target"}],
    )
    register(receiver_url(receiver), message="Create", table="account")
    account = emu.create_row("account", {"name": "Imaged Ltd"})
    created = emu.get_row("account", account)["versionnumber"]
    emu.update_row("account", account, {"name": "Imaged plc"})
    updated = emu.get_row("account", account)["versionnumber"]
    assert emu.wait_for_deliveries(timeout=10)

    by_message = {c["MessageName"]: c for c in contexts(receiver)}
    primary = pairs(by_message["Create"]["PostEntityImages"])["AsynchronousStepPrimaryName"]
    assert primary["RowVersion"] == str(created) and "versionnumber" not in attributes_of(primary)
    assert target_of(by_message["Create"])["RowVersion"] == str(created)
    pre = pairs(by_message["Update"]["PreEntityImages"])["all"]
    assert attributes_of(pre)["versionnumber"] == created  # all columns: the version before the update
    assert target_of(by_message["Update"])["RowVersion"] == str(updated)


# -- change tracking with no changes --------------------------------------------------------------------


def delta_link_of(api) -> str:
    _, link = full_sync(api, "contacts?$select=lastname")
    return link


def test_empty_delta_response_gives_its_documented_body_and_a_delta_with_changes_is_unaffected(knobs, api):
    emu = knobs
    expected = {
        "deltalink": {"@odata.context", "@odata.deltaLink", "value"},
        "no_deltalink": {"@odata.context", "value"},
        "empty_object": set(),
    }
    for mode, keys in expected.items():
        emu.empty_delta_response = mode
        link = delta_link_of(api)
        response = api("GET", link)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == keys, mode
        if keys:
            assert body["value"] == [] and body["@odata.context"].endswith("/$delta")

        created = emu.create_row("contact", {"lastname": f"Delta {mode}"})
        changed = api("GET", link).json()
        assert [row["contactid"] for row in changed["value"]] == [created]
        assert "@odata.deltaLink" in changed and changed["@odata.context"].endswith("/$delta")
        assert set(api("GET", changed["@odata.deltaLink"]).json()) == keys

    emu.empty_delta_response = "rotate"
    link = delta_link_of(api)
    seen = [frozenset(api("GET", link).json()) for _ in range(6)]
    assert set(seen) == {frozenset(keys) for keys in expected.values()}
    assert seen[:3] == seen[3:]  # a cycle of the three answers

    full = api("GET", "contacts?$select=lastname", headers={"Prefer": "odata.track-changes"}).json()
    assert "@odata.deltaLink" in full and full["value"]  # a full read is unchanged


def test_empty_delta_response_rejects_an_unknown_mode(emu):
    with pytest.raises(ValueError, match="empty_delta_response"):
        emu.empty_delta_response = "nothing"
    assert emu.empty_delta_response == "deltalink"
