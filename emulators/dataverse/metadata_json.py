"""Tables, columns, choices, alternate keys and relationships in the Web API's metadata shapes
(`EntityMetadata`, `*AttributeMetadata`, `OptionSetMetadata`, `EntityKeyMetadata`,
`OneToManyRelationshipMetadata`), as `EntityDefinitions` and `RelationshipDefinitions` return them."""

from __future__ import annotations

from .schema import (
    BOOLEAN,
    CHOICE_TYPES,
    DATETIME,
    DECIMAL,
    DOUBLE,
    INT_RANGE,
    INTEGER,
    MEMO,
    METADATA_TYPE,
    MONEY,
    STATE,
    STATUS,
    STRING,
    TYPE_NAME,
    Attribute,
    Key,
    Option,
    Relationship,
    Table,
    metadata_id,
)

CRM = "Microsoft.Dynamics.CRM."


def label(text: str) -> dict:
    localized = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": False,
        "MetadataId": metadata_id("label", text),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized] if text else [], "UserLocalizedLabel": localized if text else None}


def _managed(value: bool, name: str) -> dict:
    return {"Value": value, "CanBeChanged": True, "ManagedPropertyLogicalName": name}


def entity_json(table: Table) -> dict:
    return {
        "@odata.type": f"#{CRM}EntityMetadata",
        "MetadataId": table.metadata_id,
        "LogicalName": table.logical_name,
        "SchemaName": table.schema_name,
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "CollectionSchemaName": table.entity_set,
        "PrimaryIdAttribute": table.primary_id,
        "PrimaryNameAttribute": table.primary_name,
        "ObjectTypeCode": table.object_type_code,
        "ChangeTrackingEnabled": table.change_tracking,
        "CanChangeTrackingBeEnabled": _managed(True, "canchangetrackingbeenabled"),
        "IsActivity": table.is_activity,
        "IsActivityParty": table.logical_name in ("contact", "account", "systemuser"),
        "HasActivities": table.has_activities,
        "HasNotes": False,
        "IsCustomEntity": table.is_custom,
        "IsManaged": not table.is_custom,
        "IsIntersect": False,
        "OwnershipType": table.ownership,
        "DisplayName": label(table.display_name),
        "DisplayCollectionName": label(table.display_collection_name),
        "Description": label(""),
        "IsValidForAdvancedFind": True,
    }


def attribute_json(table: Table, attribute: Attribute) -> dict:
    out = {
        "@odata.type": f"#{CRM}{METADATA_TYPE[attribute.type]}",
        "MetadataId": attribute.metadata_id,
        "LogicalName": attribute.logical_name,
        "SchemaName": attribute.schema_name,
        "EntityLogicalName": table.logical_name,
        "AttributeType": attribute.type,
        "AttributeTypeName": {"Value": TYPE_NAME[attribute.type]},
        "AttributeOf": None,
        "DisplayName": label(attribute.display_name),
        "Description": label(""),
        "IsPrimaryId": attribute.is_primary_id,
        "IsPrimaryName": attribute.is_primary_name,
        "IsCustomAttribute": attribute.is_custom,
        "IsManaged": not attribute.is_custom,
        "IsLogical": False,
        "IsValidForCreate": attribute.writable or attribute.is_primary_id,
        "IsValidForUpdate": attribute.writable,
        "IsValidForRead": attribute.readable,
        "RequiredLevel": {
            "Value": "SystemRequired" if attribute.is_primary_id else "None",
            "CanBeChanged": not attribute.is_primary_id,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
    }
    kind = attribute.type
    if kind in (STRING, MEMO):
        text_format = "Email" if attribute.logical_name.startswith("emailaddress") else "Text"
        out.update(
            MaxLength=attribute.max_length,
            DatabaseLength=(attribute.max_length or 0) * 2,
            Format=text_format if kind == STRING else "TextArea",
            FormatName={"Value": text_format},
        )
    elif kind == INTEGER:
        out.update(MinValue=INT_RANGE[0], MaxValue=INT_RANGE[1], Format="None")
    elif kind in (MONEY, DECIMAL, DOUBLE):
        out.update(Precision=2, MinValue=-100000000000.0, MaxValue=100000000000.0)
    elif kind == DATETIME:
        behavior = "DateOnly" if attribute.date_only else "UserLocal"
        out.update(
            Format="DateOnly" if attribute.date_only else "DateAndTime", DateTimeBehavior={"Value": behavior}
        )
    elif attribute.is_lookup:
        out.update(Targets=list(attribute.targets))
    elif kind in CHOICE_TYPES:
        out.update(DefaultFormValue=-1 if kind not in (STATE, STATUS) else None)
    elif kind == BOOLEAN:
        out.update(DefaultValue=False)
    return out


def option_set_json(table: Table, attribute: Attribute) -> dict:
    def option(o: Option) -> dict:
        out = {
            "Value": o.value,
            "Label": label(o.label),
            "Description": label(""),
            "Color": None,
            "IsManaged": False,
            "ExternalValue": None,
            "ParentValues": [],
            "MetadataId": None,
            "HasChanged": None,
        }
        if attribute.type == STATE:
            out.update(DefaultStatus=o.default_status, InvariantName=o.label)
        if attribute.type == STATUS:
            out.update(State=o.state, TransitionData=None)
        return out

    common = {
        "MetadataId": metadata_id(table.logical_name, attribute.logical_name, "optionset"),
        "Name": f"{table.logical_name}_{attribute.logical_name}",
        "IsGlobal": False,
        "IsCustomOptionSet": attribute.is_custom,
        "DisplayName": label(attribute.display_name),
    }
    if attribute.type == BOOLEAN:
        return {
            **common,
            "OptionSetType": "Boolean",
            "TrueOption": option(attribute.options[1]),
            "FalseOption": option(attribute.options[0]),
        }
    option_type = {STATE: "State", STATUS: "Status"}.get(attribute.type, "Picklist")
    return {**common, "OptionSetType": option_type, "Options": [option(o) for o in attribute.options]}


def key_json(table: Table, key: Key) -> dict:
    return {
        "@odata.type": f"#{CRM}EntityKeyMetadata",
        "MetadataId": key.metadata_id,
        "LogicalName": key.logical_name,
        "SchemaName": key.schema_name,
        "EntityLogicalName": table.logical_name,
        "KeyAttributes": list(key.attributes),
        "EntityKeyIndexStatus": key.status,
        "DisplayName": label(key.display_name),
        "IsManaged": False,
        "AsyncJob": None,
    }


def relationship_json(relationship: Relationship) -> dict:
    return {
        "@odata.type": f"#{CRM}OneToManyRelationshipMetadata",
        "MetadataId": relationship.metadata_id,
        "SchemaName": relationship.schema_name,
        "RelationshipType": "OneToManyRelationship",
        "ReferencedEntity": relationship.referenced_entity,
        "ReferencedAttribute": relationship.referenced_attribute,
        "ReferencingEntity": relationship.referencing_entity,
        "ReferencingAttribute": relationship.referencing_attribute,
        "ReferencedEntityNavigationPropertyName": relationship.referenced_navigation_property,
        "ReferencingEntityNavigationPropertyName": relationship.navigation_property,
        "IsCustomRelationship": relationship.is_custom,
        "IsManaged": not relationship.is_custom,
        "IsValidForAssociate": True,
        "SecurityTypes": "None",
    }
