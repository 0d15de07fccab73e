"""Dead letters of events_push: events whose contact never reached Dynamics die of old age; once the
contact exists, `deadletters retry` delivers them and clears the letters."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from emulators.campaign.seed import build_events
from shared.cli import OK, WARNINGS
from shared.flows.events import PARKED, EventsFlow
from shared.setup.d365 import D365Setup
from tests.builders.sync_config import LAST_NAME, cli, contacts_mapping, sync_config

CONFIG = sync_config(contacts_mapping(LAST_NAME))
ACTIVITY_TABLES = ("acs_emailsend", "acs_emailopen", "acs_emailclick", "acs_emailbounce")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def flow_at(app, clock: Clock) -> EventsFlow:
    """The app's events flow on a settable clock (the parking age is hours)."""
    return EventsFlow(
        config=app.config,
        dataverse=app.dataverse,
        campaign=app.campaign,
        journal=app.events.journal,
        store=app.store,
        options=app.events.options,
        utcnow=clock,
    )


def test_events_dead_for_a_missing_contact_are_delivered_by_retry_once_it_exists(stack, make_app):
    app = make_app(CONFIG, EVENTS_PARK_MAX_AGE_HOURS="1")
    D365Setup(dataverse=app.dataverse, config=app.config).run()
    contact_id = str(uuid.uuid4())  # Campaign knows the profile; Dynamics does not have the contact yet
    pkey = stack.campaign.put_profile(
        {"email": "late@example.org", "lastName": "Late", "externalId": contact_id}
    )
    profiles = [{"PKey": pkey, "externalId": contact_id, "email": "late@example.org"}]
    events = build_events(profiles, 5, tenant=stack.campaign.tenant, now=stack.campaign.clock.now(), seed=3)
    stack.campaign.publish_events(events)
    clock = Clock()
    assert flow_at(app, clock).run().counts["parked"] == 5
    clock.now += timedelta(hours=2)
    assert flow_at(app, clock).run().counts["dead"] == 5
    assert app.store.deadletters.count(flow="events_push") == 5

    code, out = cli(app, "deadletters", "retry", "--flow", "events_push")
    assert code == WARNINGS and out.splitlines()[-1] == "5 retried: 0 fixed and removed, 5 kept."
    assert "parked" in out  # the contact is still missing: back in the queue for the timer

    stack.dataverse.create_row("contact", {"contactid": contact_id, "lastname": "Late"})
    code, out = cli(app, "deadletters", "retry", "--flow", "events_push")

    assert code == OK and out.splitlines()[-1] == "5 retried: 5 fixed and removed, 0 kept."
    written = {row["acs_eventid"] for table in ACTIVITY_TABLES for row in stack.dataverse.rows(table)}
    assert written == {event["id"] for event in events}
    assert list(app.store.ledger.iter_records(PARKED)) == []
    code, out = cli(app, "status", "--json")
    flow = json.loads(out)["flows"]["events_push"]
    assert (flow["dead_letters"], flow["records"][PARKED]["dead"], flow["records"][PARKED]["failed"]) == (
        0,
        0,
        0,
    )
