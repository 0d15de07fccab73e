"""Egress end to end: Campaign emulator's I/O Events journal → events_push → activities in the Dataverse
emulator, with the checkpoint, parked events and dead letters in Azurite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.timer import TimerRequest

import events_push
from emulators.campaign.seed import build_events
from emulators.stack import Stack
from shared.app import App
from shared.flows.events import FLOW, PARKED, EventsFlow
from shared.flows.timeline import follow_up_task_id
from shared.settings import load_settings
from shared.setup.d365 import D365Setup
from shared.store import RecordStatus
from tests.builders.sync_config import EMAIL, LAST_NAME, contacts_mapping, sync_config

ACTIVITY_TABLES = {
    "send": "acs_emailsend",
    "open": "acs_emailopen",
    "click": "acs_emailclick",
    "bounce": "acs_emailbounce",
}


def events_config(**events) -> dict:
    return sync_config(contacts_mapping(LAST_NAME, EMAIL), events=events)


def ready_app(stack: Stack, config: dict | None = None, **settings) -> App:
    """An app on the stack whose Dynamics has the activity tables (as after `d365 setup`)."""
    app = App(load_settings(stack.app_settings(sync_config=config or events_config(), **settings)))
    D365Setup(dataverse=app.dataverse, config=app.config).run()
    return app


def linked_profiles(stack: Stack, contact_ids: list[str]) -> list[dict]:
    """One Campaign profile per contact id, linked by External ID, as the ingress leaves them."""
    profiles = []
    for n, contact_id in enumerate(contact_ids):
        email = f"person{n}.{contact_id[:8]}@example.com"
        pkey = stack.campaign.put_profile(
            {"email": email, "lastName": f"Person {n}", "externalId": contact_id}
        )
        profiles.append({"PKey": pkey, "externalId": contact_id, "email": email})
    return profiles


def publish(stack: Stack, profiles: list[dict], n: int, *, seed: int = 1, **options) -> list[dict]:
    events = build_events(
        profiles, n, tenant=stack.campaign.tenant, now=stack.campaign.clock.now(), seed=seed
    )
    stack.campaign.publish_events(events, **options)
    return events


def activities(stack: Stack, event_type: str) -> dict[str, dict]:
    """The activity rows of one type by event id; fails on two rows for one event."""
    rows = list(stack.dataverse.rows(ACTIVITY_TABLES[event_type]))
    by_event = {row["acs_eventid"]: row for row in rows}
    assert len(by_event) == len(rows), f"two {event_type} activities for one event"
    return by_event


def contact_of(event: dict, profiles: list[dict]) -> str:
    by_pkey = {p["PKey"]: p["externalId"] for p in profiles}
    return by_pkey[event["data"]["profile"]["recipientId"]]


def to_second(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).replace(microsecond=0)


@pytest.fixture
def clock():
    """A settable UTC clock for the flow (park backoff and age), starting now."""

    class Clock:
        now = datetime.now(UTC)

        def __call__(self) -> datetime:
            return self.now

    return Clock()


def flow_at(app: App, clock) -> EventsFlow:
    events = app.events
    return EventsFlow(
        config=app.config,
        dataverse=app.dataverse,
        campaign=app.campaign,
        journal=events.journal,
        store=app.store,
        options=events.options,
        utcnow=clock,
    )


def test_ten_thousand_shuffled_events_with_repeats_become_one_activity_per_enabled_event(stack):
    app = ready_app(
        stack,
        events_config(send=False),
        ACS_EVENTS_PAGE_LIMIT=1000,
        D365_BATCH_SIZE=500,
        D365_MAX_CONCURRENCY=8,
    )
    profiles = linked_profiles(stack, stack.dataverse.seed_contacts(400))
    events = publish(stack, profiles, 10_000, seed=7, duplicate_rate=0.05, shuffle_seed=3)

    report = app.events_push()

    assert report.outcome == "succeeded", report.errors
    published = stack.campaign.journal.published
    assert published > 10_300  # the repeats were published too
    assert report.counts["events_read"] == published
    sends = [e for e in events if e["data"]["eventType"] == "send"]
    assert activities(stack, "send") == {}
    assert report.counts["skipped_disabled"] >= len(sends)
    for event_type in ("open", "click", "bounce"):
        expected = {e["id"]: e for e in events if e["data"]["eventType"] == event_type}
        rows = activities(stack, event_type)
        assert rows.keys() == expected.keys()
        for event_id, row in rows.items():
            data = expected[event_id]["data"]
            assert row["regardingobjectid"] == contact_of(expected[event_id], profiles)
            assert row["subject"] == (
                f"Campaign Name: {data['campaign']['label']}; Delivery Name: {data['delivery']['label']}"
            )
            assert to_second(row["actualend"]) == to_second(data["timestamp"])
            assert row["acs_mirrorpageurl"] == data["mirrorPageUrl"]
            assert row["acs_recipientid"] == data["profile"]["recipientId"]
            assert row["ownerid"] == stack.dataverse.application_user_id
            if event_type == "click":
                assert row["acs_clickedurl"] == data["clickedUrl"]
            if event_type == "bounce":
                assert row["acs_bouncereason"] == data["bounce"]["reason"]


def test_a_crash_after_a_batch_is_written_but_before_its_checkpoint_creates_no_duplicates_on_rerun(stack):
    settings = {"ACS_EVENTS_PAGE_LIMIT": 100}
    app = ready_app(stack, **settings)
    profiles = linked_profiles(stack, stack.dataverse.seed_contacts(30))
    events = publish(stack, profiles, 300)

    class Crash(Exception):
        pass

    def crash(*args, **kwargs):
        raise Crash("the worker died before saving the journal position")

    app.store.checkpoints.put = crash
    with pytest.raises(Crash):
        app.events_push()
    written_before_crash = sum(len(activities(stack, t)) for t in ACTIVITY_TABLES)
    assert 0 < written_before_crash < len(events)
    assert app.store.reports.latest(FLOW)["outcome"] == "failed"

    rerun = App(app.settings).events_push()

    assert rerun.outcome == "succeeded", rerun.errors
    assert rerun.counts["events_read"] == len(events)  # the written batch was read again
    for event_type in ACTIVITY_TABLES:
        assert activities(stack, event_type).keys() == {
            e["id"] for e in events if e["data"]["eventType"] == event_type
        }


def test_events_wait_for_a_contact_created_later_and_are_dead_lettered_past_the_age_limit(stack, clock):
    app = ready_app(stack, EVENTS_PARK_MAX_AGE_HOURS=72, RETRY_BASE_DELAY_SECONDS=60)
    late, never = str(uuid.uuid4()), str(uuid.uuid4())
    late_profiles = linked_profiles(stack, [late])
    never_profiles = linked_profiles(stack, [never])
    late_events = publish(stack, late_profiles, 6, seed=1)
    never_events = publish(stack, never_profiles, 4, seed=2)
    flow = flow_at(app, clock)

    first = flow.run()

    assert first.counts["parked"] == 10
    assert sum(len(activities(stack, t)) for t in ACTIVITY_TABLES) == 0
    parked = list(app.store.ledger.iter_records(PARKED, status=RecordStatus.FAILED))
    assert {r.source_id for r in parked} == {e["id"] for e in late_events + never_events}

    stack.dataverse.create_row("contact", {"contactid": late, "lastname": "Late"})
    clock.now += timedelta(minutes=5)
    second = flow.run()

    assert second.counts["retried"] == 10
    assert second.counts["written"] == 6
    assert second.counts["parked"] == 4
    for event in late_events:
        row = activities(stack, event["data"]["eventType"])[event["id"]]
        assert row["regardingobjectid"] == late
    assert app.store.ledger.get(PARKED, late_events[0]["id"]) is None

    clock.now += timedelta(hours=73)
    third = flow.run()

    assert third.counts["dead"] == 4
    assert third.outcome == "partial"
    letters = {letter.record_id: letter for letter in app.store.deadletters.iter_letters(flow=FLOW)}
    assert letters.keys() == {e["id"] for e in never_events}
    letter = letters[never_events[0]["id"]]
    assert never in letter.error["message"] and "gave up after 72 hours" in letter.error["message"]
    assert letter.payload["id"] == never_events[0]["id"]
    assert app.store.ledger.get(PARKED, never_events[0]["id"]).status == RecordStatus.DEAD
    assert flow.run().counts["retried"] == 0


def test_a_throttled_dataverse_is_waited_for_and_never_pushed_past_its_limits(azurite):
    limits = {"max_requests": 50, "window_seconds": 1, "max_concurrency": 2}
    with Stack(azurite=azurite, dataverse_options=limits) as stack:
        app = ready_app(stack, ACS_EVENTS_PAGE_LIMIT=60, D365_BATCH_SIZE=20, D365_MAX_CONCURRENCY=2)
        profiles = linked_profiles(stack, stack.dataverse.seed_contacts(20))
        events = publish(stack, profiles, 120)

        report = app.events_push()

        assert report.outcome == "succeeded", report.errors
        assert app.dataverse.pipeline.stats["throttled"] > 0
        limit = stack.dataverse.stats()["limit"]
        assert limit["rejected"]["requests"] > 0  # the limit was reached and held...
        assert limit["rejected"]["concurrency"] == 0  # ...and never more requests in flight than allowed
        assert limit["peak_in_flight"] <= 2
        assert sum(len(activities(stack, t)) for t in ACTIVITY_TABLES) == len(events)


def test_an_expired_journal_position_is_reported_and_reading_restarts_at_the_oldest_event(stack):
    app = ready_app(stack)
    profiles = linked_profiles(stack, stack.dataverse.seed_contacts(5))
    publish(stack, profiles, 10, seed=1)
    assert app.events_push().outcome == "succeeded"
    lost = publish(stack, profiles, 5, seed=2)
    stack.campaign.advance_time(8 * 86400)  # past the 7-day retention: everything is purged
    kept = publish(stack, profiles, 7, seed=3)

    report = app.events_push()

    assert report.outcome == "partial"
    assert report.counts["journal_restarts"] == 1
    assert report.errors[0]["stage"] == "journal"
    assert "expired" in report.notes[0] and "lost" in report.notes[0]
    written = set().union(*(activities(stack, t).keys() for t in ACTIVITY_TABLES))
    assert {e["id"] for e in kept} <= written
    assert not {e["id"] for e in lost} & written
    checkpoint = app.store.checkpoints.get(FLOW, "journal")
    assert checkpoint.data["expired_position"] and checkpoint.position
    assert app.store.reports.latest(FLOW)["outcome"] == "partial"


def test_follow_up_tasks_are_created_once_per_click_and_bounce_for_the_configured_owner(stack):
    owner = stack.dataverse.interactive_user_id
    config = events_config(follow_up_task_on_click=True, fix_address_task_on_bounce=True, owner_id=owner)
    app = ready_app(stack, config)
    profiles = linked_profiles(stack, stack.dataverse.seed_contacts(5))
    events = publish(stack, profiles, 40, duplicate_rate=0.3, shuffle_seed=1)
    assert app.events_push().outcome == "succeeded"
    stack.campaign.publish_events(events)  # a replay of every event

    report = App(app.settings).events_push()

    assert report.outcome == "succeeded", report.errors
    tasks = {row["activityid"]: row for row in stack.dataverse.rows("task")}
    expected = {
        follow_up_task_id(e["id"], e["data"]["eventType"]): e
        for e in events
        if e["data"]["eventType"] in ("click", "bounce")
    }
    assert tasks.keys() == expected.keys()
    for task_id, task in tasks.items():
        event = expected[task_id]
        assert task["regardingobjectid"] == contact_of(event, profiles)
        assert task["ownerid"] == owner
        if event["data"]["eventType"] == "click":
            assert (
                task["subject"].startswith("Follow up") and event["data"]["clickedUrl"] in task["description"]
            )
        else:
            assert task["subject"].startswith("Fix the email address")
            assert event["data"]["bounce"]["reason"] in task["description"]
    for event_type in ACTIVITY_TABLES:
        assert {row["ownerid"] for row in activities(stack, event_type).values()} <= {owner}


def test_without_the_activity_tables_the_run_fails_and_says_to_run_the_setup(make_app, stack):
    app = make_app(events_config())
    publish(stack, linked_profiles(stack, stack.dataverse.seed_contacts(2)), 3)

    report = app.events_push()

    assert report.outcome == "failed"
    assert "d365 setup" in report.errors[0]["error"]
    assert app.store.checkpoints.get(FLOW, "journal").position is None


def test_the_events_push_function_runs_the_flow_on_its_timer(function_app_env, stack):
    app = function_app_env(events_config(bounce=False))
    D365Setup(dataverse=app.dataverse, config=app.config).run()
    events = publish(stack, linked_profiles(stack, stack.dataverse.seed_contacts(3)), 12)

    events_push.main(TimerRequest(past_due=True))

    latest = app.store.reports.latest(FLOW)
    assert latest["outcome"] == "succeeded"
    written = set().union(*(activities(stack, t).keys() for t in ACTIVITY_TABLES))
    assert written == {e["id"] for e in events if e["data"]["eventType"] != "bounce"}
