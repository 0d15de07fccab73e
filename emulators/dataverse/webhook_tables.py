"""The tables behind webhooks: serviceendpoint, the SDK messages and their filters, the processing steps
and step images that register a webhook, and asyncoperation, the system jobs whose regarding column
reaches every data table."""

from __future__ import annotations

from .schema import (
    BOOLEAN,
    DATETIME,
    ENTITYNAME,
    INTEGER,
    MEMO,
    PICKLIST,
    STRING,
    UNIQUEIDENTIFIER,
    Attribute,
    Option,
    Schema,
    Table,
    boolean,
    picklist,
)
from .tables import create_table, lookup


def add_webhook_tables(schema: Schema) -> None:
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
