"""How tables are built: the columns every table gets, activity tables (activitypointer columns and the
per-target `regardingobjectid_<target>_<activity>` navigation properties), lookups, alternate keys, and
custom columns from the short specs `define_table` takes."""

from __future__ import annotations

from typing import Any

from .errors import bad_request
from .schema import (
    BIGINT,
    BOOLEAN,
    DATETIME,
    DECIMAL,
    DOUBLE,
    ENTITYNAME,
    INTEGER,
    LOOKUP,
    MEMO,
    MONEY,
    MULTISELECT,
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
_SPEC_TYPES = {
    "String": STRING,
    "Memo": MEMO,
    "Integer": INTEGER,
    "BigInt": BIGINT,
    "Decimal": DECIMAL,
    "Double": DOUBLE,
    "Money": MONEY,
    "Boolean": BOOLEAN,
    "DateTime": DATETIME,
    "Date": DATETIME,
    "Picklist": PICKLIST,
    "MultiSelectPicklist": MULTISELECT,
    "Lookup": LOOKUP,
    "Uniqueidentifier": UNIQUEIDENTIFIER,
}


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


def add_spec_columns(schema: Schema, table: Table, specs: dict[str, Any]) -> None:
    """Custom columns from `define_table`'s specs: a type name alone, or with the column's max length
    (String, Memo), its choices (Picklist, MultiSelectPicklist) or the table it looks up (Lookup)."""
    for name, spec in specs.items():
        kind, extra = (spec, None) if isinstance(spec, str) else spec
        if kind == "Lookup":
            lookup(schema, table, name, extra, is_custom=True)
            continue
        options = []
        if kind == "Boolean":
            options = boolean()
        elif kind in ("Picklist", "MultiSelectPicklist"):
            options = picklist(*dict(extra).items())
        table.add(
            Attribute(
                name,
                _SPEC_TYPES[kind],
                is_custom=True,
                options=options,
                date_only=kind == "Date",
                max_length=extra if kind in ("String", "Memo") else None,
            )
        )
