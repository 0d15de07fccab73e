"""Changing definitions through `EntityDefinitions` and `RelationshipDefinitions`: creating custom tables,
columns, alternate keys and lookups (one-to-many relationships), and updating a table, with the checks
Dataverse makes on those requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors
from .errors import bad_request
from .messages import ApiCall, Reply
from .schema import (
    BOOLEAN,
    CHOICE_TYPES,
    DATETIME,
    LOOKUP_TYPES,
    METADATA_TYPE,
    STATE,
    STATUS,
    Attribute,
    Option,
    Schema,
    Table,
    boolean,
)
from .store import Store
from .tables import add_key, create_table, lookup

_KIND_BY_METADATA_TYPE = {name: kind for kind, name in METADATA_TYPE.items() if kind not in LOOKUP_TYPES}


def label_text(value: Any, default: str = "") -> str:
    """The first localized label of a Label complex value (what a create request carries)."""
    if isinstance(value, dict):
        for localized in value.get("LocalizedLabels") or []:
            if localized.get("Label"):
                return localized["Label"]
    return default


def create_custom_table(call: ApiCall, schema: Schema, on_table_created: Callable[[Table], None]) -> Reply:
    body = call.json()
    schema_name = body.get("SchemaName") if isinstance(body, dict) else None
    if not schema_name or "_" not in schema_name.strip("_"):
        raise bad_request("A custom table needs a SchemaName with a customization prefix, like 'new_Thing'.")
    primaries = [a for a in body.get("Attributes") or [] if a.get("IsPrimaryName")]
    if len(primaries) != 1 or not str(primaries[0].get("@odata.type", "")).endswith(
        "StringAttributeMetadata"
    ):
        raise bad_request("A new table needs exactly one StringAttributeMetadata with IsPrimaryName = true.")
    ownership = body.get("OwnershipType", "UserOwned")
    if ownership not in ("UserOwned", "OrganizationOwned"):
        raise bad_request(f"The OwnershipType '{ownership}' is not supported.")
    is_activity = bool(body.get("IsActivity"))
    if is_activity and ownership != "UserOwned":
        raise bad_request("An activity table must be user owned.")
    primary = primaries[0]
    table = create_table(
        schema,
        schema_name.lower(),
        entity_set=body.get("EntitySetName") or None,
        primary_name=str(primary.get("SchemaName", "")).lower() or f"{schema_name.lower()}_name",
        primary_name_length=int(primary.get("MaxLength") or 100),
        change_tracking=bool(body.get("ChangeTrackingEnabled")),
        is_activity=is_activity,
        has_activities=bool(body.get("HasActivities")),
        ownership=ownership,
        schema_name=schema_name,
        display_name=label_text(body.get("DisplayName"), schema_name),
        display_collection_name=label_text(body.get("DisplayCollectionName")),
    )
    name_column = table.attributes[table.primary_name]
    name_column.schema_name = (
        "Subject" if is_activity else primary.get("SchemaName") or name_column.schema_name
    )
    name_column.display_name = label_text(primary.get("DisplayName"), name_column.display_name)
    on_table_created(table)
    return Reply(204, [("OData-EntityId", f"{call.api_url}EntityDefinitions({table.metadata_id})")])


def update_table(call: ApiCall, table: Table) -> Reply:
    body = call.json()
    if not isinstance(body, dict):
        raise bad_request("The request body must be the table definition.")
    tracking = body.get("ChangeTrackingEnabled")
    if tracking is False and table.change_tracking:
        raise bad_request(f"Change tracking cannot be disabled once enabled (table '{table.logical_name}').")
    if tracking is True:
        table.change_tracking = True
    if "DisplayName" in body:
        table.display_name = label_text(body["DisplayName"], table.display_name)
    return Reply(204)


def create_attribute(call: ApiCall, table: Table) -> Reply:
    body = call.json()
    odata_type = str(body.get("@odata.type", "") if isinstance(body, dict) else "").rsplit(".", 1)[-1]
    if odata_type == "LookupAttributeMetadata":
        raise bad_request(
            "Create lookup columns with POST RelationshipDefinitions (a OneToManyRelationship)."
        )
    kind = _KIND_BY_METADATA_TYPE.get(odata_type)
    schema_name = body.get("SchemaName")
    if kind is None or kind in (STATE, STATUS) or not schema_name:
        raise bad_request(
            "The column needs a supported '@odata.type' (e.g. Microsoft.Dynamics.CRM."
            "StringAttributeMetadata) and a SchemaName."
        )
    logical = schema_name.lower()
    if logical in table.attributes:
        raise bad_request(
            f"A column named '{logical}' already exists on '{table.logical_name}'.", errors.DUPLICATE_NAME
        )
    options: list[Option] = []
    option_set = body.get("OptionSet") or {}
    if kind == BOOLEAN:
        options = boolean(
            label_text((option_set.get("FalseOption") or {}).get("Label"), "No"),
            label_text((option_set.get("TrueOption") or {}).get("Label"), "Yes"),
        )
    elif kind in CHOICE_TYPES:
        for number, option in enumerate(option_set.get("Options") or []):
            value = option.get("Value")
            options.append(
                Option(
                    100000000 + number if value is None else int(value),
                    label_text(option.get("Label"), str(value)),
                )
            )
        if not options:
            raise bad_request("A choice column needs OptionSet.Options.")
    behavior = (body.get("DateTimeBehavior") or {}).get("Value")
    attribute = table.add(
        Attribute(
            logical,
            kind,
            schema_name=schema_name,
            is_custom=True,
            options=options,
            max_length=body.get("MaxLength"),
            display_name=label_text(body.get("DisplayName"), schema_name),
            date_only=kind == DATETIME and (body.get("Format") == "DateOnly" or behavior == "DateOnly"),
        )
    )
    location = f"{call.api_url}EntityDefinitions({table.metadata_id})/Attributes({attribute.metadata_id})"
    return Reply(204, [("OData-EntityId", location)])


def create_key(call: ApiCall, table: Table, store: Store) -> Reply:
    body = call.json()
    columns = body.get("KeyAttributes") if isinstance(body, dict) else None
    if not body.get("SchemaName") or not isinstance(columns, list) or not columns:
        raise bad_request("A key needs a SchemaName and KeyAttributes.")
    key = add_key(
        table, body["SchemaName"], [str(c).lower() for c in columns], label_text(body.get("DisplayName"))
    )
    if not store.index_key(table.logical_name, key):
        key.status = "Failed"  # existing rows are not unique: the index job fails, as in Dataverse
    location = f"{call.api_url}EntityDefinitions({table.metadata_id})/Keys({key.metadata_id})"
    return Reply(204, [("OData-EntityId", location)])


def create_relationship(call: ApiCall, schema: Schema) -> Reply:
    body = call.json()
    if not isinstance(body, dict) or not str(body.get("@odata.type", "")).endswith(
        "OneToManyRelationshipMetadata"
    ):
        raise bad_request("Only OneToManyRelationshipMetadata relationships can be created in the emulator.")
    referenced = schema.table(str(body.get("ReferencedEntity")))
    referencing = schema.table(str(body.get("ReferencingEntity")))
    lookup_body, schema_name = body.get("Lookup") or {}, body.get("SchemaName")
    if not schema_name or not lookup_body.get("SchemaName"):
        raise bad_request("A relationship needs a SchemaName and a Lookup with a SchemaName.")
    if schema.relationship(schema_name) is not None:
        raise bad_request(f"A relationship named '{schema_name}' already exists.", errors.DUPLICATE_NAME)
    logical = lookup_body["SchemaName"].lower()
    if logical in referencing.attributes:
        raise bad_request(
            f"A column named '{logical}' already exists on '{referencing.logical_name}'.",
            errors.DUPLICATE_NAME,
        )
    attribute = lookup(
        schema,
        referencing,
        logical,
        referenced.logical_name,
        nav=body.get("ReferencingEntityNavigationPropertyName") or lookup_body["SchemaName"],
        relationship=schema_name,
        is_custom=True,
    )
    attribute.schema_name = lookup_body["SchemaName"]
    attribute.display_name = label_text(lookup_body.get("DisplayName"), attribute.schema_name)
    relationship = schema.relationship(schema_name)
    if body.get("ReferencedEntityNavigationPropertyName"):
        relationship.referenced_navigation_property = body["ReferencedEntityNavigationPropertyName"]
    return Reply(
        204, [("OData-EntityId", f"{call.api_url}RelationshipDefinitions({relationship.metadata_id})")]
    )
