"""The four Campaign email activity tables (send, open, URL click, hard bounce): their columns, shared by
the setup command, which creates them, and the events flow, which writes them.

Table logical names come from the sync config (`events.activity_tables`); the columns are always these.
Every table inherits the activitypointer columns (`subject`, `description`, `actualend`, `ownerid`,
`regardingobjectid`, ...) and gets the event id as an alternate key, which makes writes idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# What to tell an operator whose Dynamics lacks what this module describes.
SETUP_HINT = "run `python -m shared.cli d365 setup`"

EVENT_ID_COLUMN = "acs_eventid"
EVENT_ID_KEY = "acs_eventid_key"
SUBJECT_MAX_LENGTH = 400  # activitypointer.subject
DESCRIPTION_MAX_LENGTH = 2000  # activitypointer.description
TASK_SUBJECT_MAX_LENGTH = 200  # task.subject is shorter than other activities' subject


@dataclass(frozen=True)
class Column:
    logical_name: str
    display_name: str
    max_length: int
    format: str = "Text"  # StringFormatName: Text or Url
    types: frozenset[str] | None = None  # event types whose table has it; None: every table


COLUMNS: tuple[Column, ...] = (
    Column(EVENT_ID_COLUMN, "Event ID", 100),
    Column("acs_campaignname", "Campaign Name", 255),
    Column("acs_deliveryname", "Delivery Name", 255),
    Column("acs_mirrorpageurl", "Mirror Page URL", 2000, "Url"),
    Column("acs_recipientid", "Campaign Recipient ID", 100),
    Column("acs_clickedurl", "Clicked URL", 2000, "Url", frozenset({"click"})),
    Column("acs_bouncereason", "Bounce Reason", 1000, types=frozenset({"bounce"})),
)

DISPLAY_NAMES = {
    "send": ("Campaign Email Send", "Campaign Email Sends"),
    "open": ("Campaign Email Open", "Campaign Email Opens"),
    "click": ("Campaign Email URL Click", "Campaign Email URL Clicks"),
    "bounce": ("Campaign Email Hard Bounce", "Campaign Email Hard Bounces"),
}


def columns_for(event_type: str) -> tuple[Column, ...]:
    return tuple(c for c in COLUMNS if c.types is None or event_type in c.types)


def max_length(logical_name: str) -> int:
    return next(c.max_length for c in COLUMNS if c.logical_name == logical_name)


def label(text: str) -> dict[str, Any]:
    """A metadata Label in the user's language (1033: English)."""
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}
        ],
    }


def _not_required() -> dict[str, Any]:
    return {
        "Value": "None",
        "CanBeChanged": True,
        "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
    }


def table_definition(logical_name: str, event_type: str) -> dict[str, Any]:
    """EntityMetadata for `POST EntityDefinitions`: a user-owned activity table whose primary column is
    `Subject` (every activity's), available offline (required of custom activities)."""
    singular, plural = DISPLAY_NAMES[event_type]
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": logical_name,
        "DisplayName": label(singular),
        "DisplayCollectionName": label(plural),
        "Description": label(f"Adobe Campaign email event ({event_type}) written by the integration"),
        "OwnershipType": "UserOwned",
        "IsActivity": True,
        "HasActivities": False,
        "HasNotes": False,
        "IsAvailableOffline": True,
        "Attributes": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                "SchemaName": "Subject",
                "IsPrimaryName": True,
                "MaxLength": SUBJECT_MAX_LENGTH,
                "FormatName": {"Value": "Text"},
                "RequiredLevel": _not_required(),
                "DisplayName": label("Subject"),
            }
        ],
    }


def column_definition(column: Column) -> dict[str, Any]:
    """StringAttributeMetadata for `POST EntityDefinitions(LogicalName='...')/Attributes`."""
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "SchemaName": column.logical_name,
        "MaxLength": column.max_length,
        "FormatName": {"Value": column.format},
        "RequiredLevel": _not_required(),
        "DisplayName": label(column.display_name),
    }


def key_definition() -> Mapping[str, Any]:
    """EntityKeyMetadata for `POST EntityDefinitions(LogicalName='...')/Keys`."""
    return {"SchemaName": EVENT_ID_KEY, "DisplayName": label("Event ID"), "KeyAttributes": [EVENT_ID_COLUMN]}
