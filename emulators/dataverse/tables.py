"""How tables are built: the columns every table gets, activity tables (activitypointer columns and the
per-target `regardingobjectid_<target>_<activity>` navigation properties), and the tables present at start."""

from __future__ import annotations

from .errors import bad_request
from .schema import (
    BIGINT,
    BOOLEAN,
    CUSTOMER,
    DATETIME,
    ENTITYNAME,
    INTEGER,
    LOOKUP,
    MEMO,
    MONEY,
    OWNER,
    PICKLIST,
    STATE,
    STATUS,
    STRING,
    UNIQUEIDENTIFIER,
    Attribute,
    Key,
    Option,
    Relationship,
    Schema,
    Table,
    boolean,
    picklist,
)

ACTIVE_STATES = [Option(0, "Active", default_status=1), Option(1, "Inactive", default_status=2)]
ACTIVE_STATUSES = [Option(1, "Active", state=0), Option(2, "Inactive", state=1)]
ACTIVITY_STATES = [
    Option(0, "Open", default_status=1),
    Option(1, "Completed", default_status=2),
    Option(2, "Canceled", default_status=3),
]
ACTIVITY_STATUSES = [
    Option(1, "Open", state=0),
    Option(2, "Completed", state=1),
    Option(3, "Canceled", state=2),
]


def lookup(
    schema: Schema,
    table: Table,
    name: str,
    target: str,
    *,
    nav: str | None = None,
    kind=LOOKUP,
    relationship: str | None = None,
    writable: bool = True,
    is_custom: bool = False,
) -> Attribute:
    """Add a lookup column (or add a target to an existing polymorphic one) and its navigation property."""
    attribute = table.attributes.get(name)
    if attribute is None:
        attribute = table.add(Attribute(name, kind, writable=writable, is_custom=is_custom))
    if target not in attribute.targets:
        attribute.targets = (*attribute.targets, target)
    nav = nav or name
    schema.relate(
        Relationship(
            schema_name=relationship or f"{table.logical_name}_{name}_{target}",
            referenced_entity=target,
            referenced_attribute=schema.tables[target].primary_id
            if target in schema.tables
            else f"{target}id",
            referencing_entity=table.logical_name,
            referencing_attribute=name,
            navigation_property=nav,
            is_custom=is_custom,
        )
    )
    return attribute


def _system_columns(schema: Schema, table: Table) -> None:
    table.add(Attribute("createdon", DATETIME, writable=False, display_name="Created On"))
    table.add(Attribute("modifiedon", DATETIME, writable=False, display_name="Modified On"))
    table.add(Attribute("versionnumber", BIGINT, writable=False, display_name="Version Number"))
    for name in ("createdby", "modifiedby", "modifiedonbehalfby"):
        lookup(
            schema, table, name, "systemuser", relationship=f"lk_{table.logical_name}_{name}", writable=False
        )
    if table.ownership == "UserOwned":
        lookup(schema, table, "ownerid", "systemuser", kind=OWNER, relationship=f"user_{table.logical_name}")


def _regarding(schema: Schema, activity: Table, target: Table) -> None:
    lookup(
        schema,
        activity,
        "regardingobjectid",
        target.logical_name,
        nav=f"regardingobjectid_{target.logical_name}_{activity.logical_name}",
        relationship=f"{target.schema_name}_{activity.schema_name}",
        is_custom=activity.is_custom,
    )


def create_table(
    schema: Schema,
    logical_name: str,
    *,
    entity_set: str | None = None,
    primary_id: str | None = None,
    primary_name: str = "name",
    primary_name_length: int = 100,
    change_tracking: bool = False,
    is_activity: bool = False,
    has_activities: bool = False,
    ownership: str = "UserOwned",
    is_custom: bool = True,
    read_only: bool = False,
    states: tuple[list[Option], list[Option]] | None = (ACTIVE_STATES, ACTIVE_STATUSES),
    schema_name: str = "",
    display_name: str = "",
    display_collection_name: str = "",
    object_type_code: int = 0,
) -> Table:
    """A table with the columns Dataverse gives every table of its kind; activity tables get the
    activitypointer columns and a regarding navigation property per table that has activities."""
    if is_activity:
        primary_id, primary_name, primary_name_length = "activityid", "subject", 400
        ownership, has_activities, states = "UserOwned", False, (ACTIVITY_STATES, ACTIVITY_STATUSES)
    table = schema.add(
        Table(
            logical_name=logical_name,
            entity_set=entity_set or f"{logical_name}s",
            primary_id=primary_id or f"{logical_name}id",
            primary_name=primary_name,
            change_tracking=change_tracking,
            is_activity=is_activity,
            has_activities=has_activities,
            ownership=ownership,
            is_custom=is_custom,
            read_only=read_only,
            schema_name=schema_name,
            display_name=display_name,
            display_collection_name=display_collection_name,
            object_type_code=object_type_code,
        )
    )
    table.add(Attribute(table.primary_id, UNIQUEIDENTIFIER, is_primary_id=True, writable=False))
    if primary_name:
        table.add(
            Attribute(
                primary_name,
                STRING,
                max_length=primary_name_length,
                is_primary_name=True,
                is_custom=is_custom and not is_activity,
            )
        )
    if is_activity:
        table.add(Attribute("description", MEMO, max_length=2000))
        for name in ("scheduledstart", "scheduledend", "actualstart", "actualend"):
            table.add(Attribute(name, DATETIME))
        table.add(Attribute("activitytypecode", ENTITYNAME, writable=False))
    if states is not None:
        table.add(Attribute("statecode", STATE, options=list(states[0])))
        table.add(Attribute("statuscode", STATUS, options=list(states[1])))
    _system_columns(schema, table)
    if is_activity:
        for target in list(schema.tables.values()):
            if target.has_activities:
                _regarding(schema, table, target)
    if has_activities:
        for activity in list(schema.tables.values()):
            if activity.is_activity:
                _regarding(schema, activity, table)
    return table


def add_key(table: Table, schema_name: str, attributes: list[str], display_name: str = "") -> Key:
    for name in attributes:
        attribute = table.attribute(name)
        if attribute.type not in {STRING, INTEGER, "Decimal", DATETIME, LOOKUP, PICKLIST, UNIQUEIDENTIFIER}:
            raise bad_request(f"The attribute '{name}' of type {attribute.type} cannot be part of a key.")
    key = Key(
        schema_name=schema_name,
        attributes=list(attributes),
        table=table.logical_name,
        display_name=display_name,
    )
    if key.logical_name in table.keys:
        raise bad_request(f"A key named '{schema_name}' already exists on '{table.logical_name}'.")
    table.keys[key.logical_name] = key
    return key


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
    _webhook_tables(schema)


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


def _webhook_tables(schema: Schema) -> None:
    org_owned = {"ownership": "OrganizationOwned", "is_custom": False, "states": None}
    endpoint = create_table(schema, "serviceendpoint", object_type_code=4618, **org_owned)
    endpoint.add(
        Attribute(
            "contract",
            PICKLIST,
            options=picklist(
                (1, "OneWay"),
                (2, "Queue"),
                (3, "Rest"),
                (4, "TwoWay"),
                (5, "Topic"),
                (6, "Queue_Persistent"),
                (7, "EventHub"),
                (8, "Webhook"),
                (9, "EventGrid"),
                (10, "ManagedDataLake"),
            ),
        )
    )
    endpoint.add(
        Attribute(
            "authtype",
            PICKLIST,
            options=picklist(
                (1, "ACS"),
                (2, "SASKey"),
                (3, "SASToken"),
                (4, "WebhookKey"),
                (5, "HttpHeader"),
                (6, "HttpQueryString"),
                (7, "ConnectionString"),
                (8, "AccessKey"),
                (9, "ManagedIdentity"),
            ),
        )
    )
    endpoint.add(Attribute("authvalue", STRING, max_length=4000, readable=False))
    endpoint.add(Attribute("url", STRING, max_length=2000))
    endpoint.add(
        Attribute("messageformat", PICKLIST, options=picklist((1, "BinaryXML"), (2, "Json"), (3, "TextXML")))
    )
    endpoint.add(Attribute("description", MEMO))
    endpoint.add(Attribute("namespaceaddress", STRING, max_length=255))

    read_only = {**org_owned, "read_only": True}
    message = create_table(schema, "sdkmessage", object_type_code=4606, primary_name_length=256, **read_only)
    message.add(Attribute("categoryname", STRING, max_length=25))
    sdk_filter = create_table(schema, "sdkmessagefilter", object_type_code=4607, **read_only)
    sdk_filter.add(Attribute("primaryobjecttypecode", ENTITYNAME))
    sdk_filter.add(Attribute("secondaryobjecttypecode", ENTITYNAME))
    sdk_filter.add(Attribute("iscustomprocessingstepallowed", BOOLEAN, options=boolean()))
    lookup(schema, sdk_filter, "sdkmessageid", "sdkmessage", relationship="sdkmessageid_sdkmessagefilter")

    step = create_table(
        schema,
        "sdkmessageprocessingstep",
        object_type_code=4608,
        ownership="OrganizationOwned",
        is_custom=False,
        primary_name_length=256,
        states=(
            [Option(0, "Enabled", default_status=1), Option(1, "Disabled", default_status=2)],
            [Option(1, "Enabled", state=0), Option(2, "Disabled", state=1)],
        ),
    )
    step.add(Attribute("description", STRING, max_length=256))
    step.add(Attribute("mode", PICKLIST, options=picklist((0, "Synchronous"), (1, "Asynchronous"))))
    step.add(
        Attribute(
            "stage",
            PICKLIST,
            options=picklist(
                (5, "Initial Pre-operation (For internal use only)"),
                (10, "Pre-validation"),
                (15, "Internal"),
                (20, "Pre-operation"),
                (30, "Main Operation (For internal use only)"),
                (40, "Post-operation"),
                (50, "Post-operation (Deprecated)"),
            ),
        )
    )
    step.add(Attribute("rank", INTEGER))
    step.add(Attribute("filteringattributes", STRING, max_length=100000))
    step.add(Attribute("asyncautodelete", BOOLEAN, options=boolean()))
    step.add(
        Attribute(
            "supporteddeployment",
            PICKLIST,
            options=picklist(
                (0, "Server Only"), (1, "Microsoft Dynamics 365 Client for Outlook Only"), (2, "Both")
            ),
        )
    )
    step.add(Attribute("configuration", MEMO, max_length=1073741823))
    lookup(
        schema,
        step,
        "eventhandler",
        "serviceendpoint",
        nav="eventhandler_serviceendpoint",
        relationship="serviceendpoint_sdkmessageprocessingstep",
    )
    lookup(schema, step, "sdkmessageid", "sdkmessage", relationship="sdkmessageid_sdkmessageprocessingstep")
    lookup(
        schema,
        step,
        "sdkmessagefilterid",
        "sdkmessagefilter",
        relationship="sdkmessagefilterid_sdkmessageprocessingstep",
    )

    image = create_table(
        schema, "sdkmessageprocessingstepimage", object_type_code=4615, primary_name_length=256, **org_owned
    )
    image.add(Attribute("entityalias", STRING, max_length=256))
    image.add(
        Attribute("imagetype", PICKLIST, options=picklist((0, "PreImage"), (1, "PostImage"), (2, "Both")))
    )
    image.add(Attribute("messagepropertyname", STRING, max_length=256))
    image.add(Attribute("attributes", STRING, max_length=100000))
    image.add(Attribute("description", STRING, max_length=256))
    lookup(
        schema,
        image,
        "sdkmessageprocessingstepid",
        "sdkmessageprocessingstep",
        relationship="sdkmessageprocessingstepid_sdkmessageprocessingstepimage",
    )

    job = create_table(
        schema,
        "asyncoperation",
        object_type_code=4700,
        primary_name_length=256,
        is_custom=False,
        read_only=True,
        states=(
            [
                Option(0, "Ready", default_status=0),
                Option(1, "Suspended", default_status=10),
                Option(2, "Locked", default_status=20),
                Option(3, "Completed", default_status=30),
            ],
            [
                Option(0, "Waiting For Resources", state=0),
                Option(10, "Waiting", state=1),
                Option(20, "In Progress", state=2),
                Option(21, "Pausing", state=2),
                Option(22, "Canceling", state=2),
                Option(30, "Succeeded", state=3),
                Option(31, "Failed", state=3),
                Option(32, "Canceled", state=3),
            ],
        ),
    )
    job.add(
        Attribute(
            "operationtype",
            PICKLIST,
            options=picklist(
                (1, "System Event"), (10, "Workflow"), (12, "Update Match Code"), (13, "Import")
            ),
        )
    )
    job.add(Attribute("message", MEMO, max_length=1073741823))
    job.add(Attribute("friendlymessage", MEMO, max_length=1073741823))
    job.add(Attribute("errorcode", INTEGER))
    job.add(Attribute("primaryentitytype", ENTITYNAME))
    job.add(Attribute("correlationid", UNIQUEIDENTIFIER))
    job.add(Attribute("depth", INTEGER))
    job.add(Attribute("retrycount", INTEGER))
    job.add(Attribute("startedon", DATETIME))
    job.add(Attribute("completedon", DATETIME))
    for table in list(schema.tables.values()):
        regarding_targets_for(schema, table)
    lookup(
        schema,
        job,
        "owningextensionid",
        "sdkmessageprocessingstep",
        nav="owningextensionid_sdkmessageprocessingstep",
        relationship="SdkMessageProcessingStep_AsyncOperations",
    )


def regarding_targets_for(schema: Schema, table: Table) -> None:
    """Let system jobs point at rows of a table created later."""
    job = schema.tables.get("asyncoperation")
    if job is None or table.read_only or table.ownership == "OrganizationOwned":
        return
    regarding = job.attributes.get("regardingobjectid")
    if regarding is None or table.logical_name not in regarding.targets:
        lookup(
            schema,
            job,
            "regardingobjectid",
            table.logical_name,
            nav=f"regardingobjectid_{table.logical_name}_asyncoperation",
            relationship=f"{table.logical_name}_asyncoperations",
        )
