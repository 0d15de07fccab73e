"""Sync configurations for tests: the contacts → Campaign profile mapping with the fields a test needs,
and the operator CLI run in-process against a test's app."""

from __future__ import annotations

import io
from typing import Any

from shared.cli import main

FIRST_NAME = {"d365": "firstname", "acs": "firstName"}
LAST_NAME = {"d365": "lastname", "acs": "lastName"}
EMAIL = {"d365": "emailaddress1", "acs": "email"}
EMAIL_AS_CREATED = {**EMAIL, "apply_updates": False}  # set on create, never overwritten
CITY = {"d365": "address1_city", "acs": "location.city"}
GENDER = {"d365": "gendercode", "acs": "gender", "picklist_values": "value"}

NOWHERE = "Nowhere"  # contacts in this city fall out of NOT_NOWHERE and are deleted from Campaign
NOT_NOWHERE = {
    "combine": "or",
    "conditions": [
        {"field": "address1_city", "op": "ne", "value": NOWHERE},
        {"field": "address1_city", "op": "null"},
    ],
    "delete_filtered_out": True,
}
GENDER_LABELS = [
    {"field": "gendercode", "from": 1, "to": "male"},
    {"field": "gendercode", "from": 2, "to": "female"},
]


def contacts_mapping(*fields: dict[str, Any], **options: Any) -> dict[str, Any]:
    """The `contacts` mapping (contact → profileAndServicesExt/profile) with `fields` and any options."""
    return {
        "name": "contacts",
        "d365_table": "contact",
        "acs_resource": "profileAndServicesExt/profile",
        "fields": list(fields),
        **options,
    }


def filtered_contacts_mapping(*more_fields: dict[str, Any]) -> dict[str, Any]:
    """Names, an email set only on create, the city (contacts in NOWHERE fall out of the filter and are
    deleted from Campaign) and the gender as a replaced label, plus `more_fields`."""
    return contacts_mapping(
        FIRST_NAME,
        LAST_NAME,
        EMAIL_AS_CREATED,
        CITY,
        GENDER,
        *more_fields,
        replacements=GENDER_LABELS,
        filter=NOT_NOWHERE,
    )


def sync_config(*tables: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A sync config of `tables`; opt-outs disabled unless an `optout` section is given."""
    return {"tables": list(tables), "optout": {"direction": "disabled"}, **sections}


def cli(app: Any, *argv: str) -> tuple[int, str]:
    """Run the operator CLI on `app`; answers its exit code and what it printed."""
    out = io.StringIO()
    code = main(list(argv), app=app, out=out)
    return code, out.getvalue()
