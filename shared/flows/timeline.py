"""What a Campaign email event looks like on the Dynamics contact timeline: the activity row (upserted by
the event id, so a repeat updates the same row) and the optional follow-up task (a deterministic id,
created once)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.acs.events import CampaignEmailEvent, EmailEventType
from shared.d365.batch import BatchRequest
from shared.mapping.model import EventsConfig
from shared.setup.activities import (
    DESCRIPTION_MAX_LENGTH,
    EVENT_ID_COLUMN,
    SUBJECT_MAX_LENGTH,
    TASK_SUBJECT_MAX_LENGTH,
    columns_for,
    max_length,
)

CONTACTS = "contacts"
SYSTEM_USERS = "systemusers"
_TASK_NAMESPACE = uuid.UUID("7c0c2a4e-39a1-4f7e-9a53-3c1f0c6e5d21")


@dataclass(frozen=True)
class ActivityTarget:
    """Where rows of one activity table go: its entity set and the navigation property of `regarding`."""

    table: str
    entity_set: str
    regarding: str


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(when: datetime) -> str:
    # Dataverse keeps date-times to the second.
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def campaign_name(event: CampaignEmailEvent) -> str:
    return event.campaign_label or event.campaign_id or "(unknown)"


def delivery_name(event: CampaignEmailEvent) -> str:
    return event.delivery_label or event.delivery_id or "(unknown)"


def activity_subject(event: CampaignEmailEvent) -> str:
    """The subject Adobe's integration wrote: `Campaign Name: <c>; Delivery Name: <d>`."""
    return _clip(
        f"Campaign Name: {campaign_name(event)}; Delivery Name: {delivery_name(event)}", SUBJECT_MAX_LENGTH
    )


def _description(event: CampaignEmailEvent) -> str:
    what = {
        EmailEventType.SEND: "Email sent",
        EmailEventType.OPEN: "Email opened",
        EmailEventType.CLICK: f"Link clicked: {event.clicked_url or '(unknown URL)'}",
        EmailEventType.BOUNCE: f"Hard bounce: {event.bounce_reason or '(no reason given)'}",
    }[event.type]
    return _clip(
        f"{what}. Adobe Campaign event {event.event_id} (campaign {event.campaign_id or '?'}, "
        f"delivery {event.delivery_id or '?'}).",
        DESCRIPTION_MAX_LENGTH,
    )


def _common(regarding: str, contact_id: str, owner_id: str | None) -> dict[str, Any]:
    body = {f"{regarding}@odata.bind": f"/{CONTACTS}({contact_id})"}
    if owner_id:  # else Dataverse makes the caller, the application user, the owner
        body["ownerid@odata.bind"] = f"/{SYSTEM_USERS}({owner_id})"
    return body


def activity_request(
    event: CampaignEmailEvent, contact_id: str, target: ActivityTarget, *, owner_id: str | None = None
) -> BatchRequest:
    """The upsert of one event's activity, keyed by the event id."""
    body: dict[str, Any] = {
        "subject": activity_subject(event),
        "description": _description(event),
        **_common(target.regarding, contact_id, owner_id),
    }
    if event.timestamp is not None:
        body["actualend"] = _iso(event.timestamp)
    values = {
        "acs_campaignname": event.campaign_label or event.campaign_id,
        "acs_deliveryname": event.delivery_label or event.delivery_id,
        "acs_mirrorpageurl": event.mirror_page_url,
        "acs_recipientid": event.recipient_id,
        "acs_clickedurl": event.clicked_url,
        "acs_bouncereason": event.bounce_reason,
    }
    wanted = {c.logical_name for c in columns_for(event.type.value)}
    for column, value in values.items():
        if value and column in wanted:
            body[column] = _clip(value, max_length(column))
    return BatchRequest.upsert(target.entity_set, {EVENT_ID_COLUMN: event.event_id}, body)


def follow_up_task_id(event_id: str, kind: str) -> str:
    """The deterministic id of an event's follow-up task, so a replay finds the task it created."""
    return str(uuid.uuid5(_TASK_NAMESPACE, f"{kind}:{event_id}"))


def follow_up_request(
    event: CampaignEmailEvent, contact_id: str, task: ActivityTarget, config: EventsConfig
) -> BatchRequest | None:
    """The task an event asks for, if the config switches it on; created once (If-None-Match) and never
    overwritten, so a replay leaves a task the user already worked on alone."""
    campaign, delivery = campaign_name(event), delivery_name(event)
    if event.type is EmailEventType.CLICK and config.follow_up_task_on_click:
        kind = "click"
        subject = f"Follow up: email link clicked ({delivery})"
        description = (
            f"The contact clicked {event.clicked_url or 'a link'} in '{delivery}' "
            f"(campaign '{campaign}'). Follow up while the interest is fresh."
        )
    elif event.type is EmailEventType.BOUNCE and config.fix_address_task_on_bounce:
        kind = "bounce"
        subject = "Fix the email address: hard bounce"
        description = (
            f"An email of '{delivery}' (campaign '{campaign}') bounced permanently: "
            f"{event.bounce_reason or 'no reason given'}. Correct or replace the contact's email address."
        )
    else:
        return None
    body: dict[str, Any] = {
        "subject": _clip(subject, TASK_SUBJECT_MAX_LENGTH),
        "description": _clip(description, DESCRIPTION_MAX_LENGTH),
        **_common(task.regarding, contact_id, config.owner_id),
    }
    if event.timestamp is not None:
        body["scheduledstart"] = _iso(event.timestamp)
    return BatchRequest.upsert(
        task.entity_set, follow_up_task_id(event.event_id, kind), body, mode="create_only"
    )
