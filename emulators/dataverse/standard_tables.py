"""The tables present when the emulator starts: systemuser, account, contact, task (an activity table),
the custom cr123_vehicle with its alternate key, and the webhook tables."""

from __future__ import annotations

from .schema import (
    BOOLEAN,
    CUSTOMER,
    DATETIME,
    INTEGER,
    MEMO,
    MONEY,
    PICKLIST,
    STRING,
    UNIQUEIDENTIFIER,
    Attribute,
    Schema,
    boolean,
    picklist,
)
from .tables import add_key, create_table, lookup
from .webhook_tables import add_webhook_tables


def build_standard_schema(schema: Schema) -> None:
    """The tables present when the emulator starts."""
    user = create_table(
        schema,
        "systemuser",
        primary_name="fullname",
        primary_name_length=200,
        ownership="BusinessOwned",
        is_custom=False,
        read_only=True,
        states=None,
        object_type_code=8,
    )
    user.add(Attribute("applicationid", UNIQUEIDENTIFIER, writable=False))
    user.add(Attribute("domainname", STRING, max_length=1024))
    user.add(Attribute("isdisabled", BOOLEAN, options=boolean("Enabled", "Disabled")))

    create_table(
        schema,
        "account",
        change_tracking=True,
        has_activities=True,
        is_custom=False,
        primary_name_length=160,
        display_name="Account",
        object_type_code=1,
    )
    _contact(schema)
    task = create_table(
        schema,
        "task",
        entity_set="tasks",
        is_activity=True,
        is_custom=False,
        display_name="Task",
        object_type_code=4212,
    )
    task.add(Attribute("percentcomplete", INTEGER))
    _vehicle(schema)
    add_webhook_tables(schema)


def _contact(schema: Schema) -> None:
    contact = create_table(
        schema,
        "contact",
        primary_name="fullname",
        primary_name_length=160,
        change_tracking=True,
        has_activities=True,
        is_custom=False,
        display_name="Contact",
        object_type_code=2,
    )
    contact.attributes["fullname"].writable = False  # computed from firstname + lastname
    for name, length in (
        ("firstname", 50),
        ("lastname", 50),
        ("emailaddress1", 100),
        ("emailaddress2", 100),
        ("telephone1", 50),
        ("mobilephone", 50),
        ("jobtitle", 100),
        ("address1_line1", 250),
        ("address1_line2", 250),
        ("address1_city", 80),
        ("address1_postalcode", 20),
        ("address1_country", 80),
        ("address1_stateorprovince", 50),
    ):
        contact.add(Attribute(name, STRING, max_length=length))
    contact.add(Attribute("description", MEMO, max_length=2000))
    contact.add(Attribute("birthdate", DATETIME, date_only=True))
    contact.add(Attribute("gendercode", PICKLIST, options=picklist((1, "Male"), (2, "Female"))))
    contact.add(
        Attribute(
            "preferredcontactmethodcode",
            PICKLIST,
            options=picklist((1, "Any"), (2, "Email"), (3, "Phone"), (4, "Fax"), (5, "Mail")),
        )
    )
    for name in ("donotemail", "donotbulkemail", "donotphone", "donotpostalmail", "donotfax"):
        contact.add(Attribute(name, BOOLEAN, options=boolean("Allow", "Do Not Allow")))
    lookup(
        schema,
        contact,
        "parentcustomerid",
        "account",
        nav="parentcustomerid_account",
        kind=CUSTOMER,
        relationship="contact_customer_accounts",
    )
    lookup(
        schema,
        contact,
        "parentcustomerid",
        "contact",
        nav="parentcustomerid_contact",
        kind=CUSTOMER,
        relationship="contact_customer_contacts",
    )


def _vehicle(schema: Schema) -> None:
    vehicle = create_table(
        schema,
        "cr123_vehicle",
        primary_name="cr123_name",
        change_tracking=True,
        schema_name="cr123_Vehicle",
        display_name="Vehicle",
    )
    vehicle.add(Attribute("cr123_vin", STRING, max_length=17, is_custom=True, schema_name="cr123_VIN"))
    vehicle.add(
        Attribute(
            "cr123_model",
            PICKLIST,
            is_custom=True,
            options=picklist(
                (100000000, "Sedan"), (100000001, "Hatchback"), (100000002, "SUV"), (100000003, "Van")
            ),
        )
    )
    vehicle.add(Attribute("cr123_price", MONEY, is_custom=True))
    lookup(
        schema,
        vehicle,
        "cr123_contact",
        "contact",
        nav="cr123_Contact",
        relationship="cr123_vehicle_Contact_contact",
        is_custom=True,
    )
    add_key(vehicle, "cr123_vin_key", ["cr123_vin"], display_name="VIN")
