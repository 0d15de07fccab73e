"""`EntityDefinitions` and `RelationshipDefinitions`: reading table/column/key/relationship definitions
in the Web API's metadata shapes, and creating tables, columns, keys and lookups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors
from .errors import ApiError, bad_request
from .messages import ApiCall, Reply, json_reply
from .odata import Segment, compile_filter, parse_key, split_outside_quotes, syntax_error
from .schema import (
    BOOLEAN,
    CHOICE_TYPES,
    DATETIME,
    DECIMAL,
    DOUBLE,
    INT_RANGE,
    INTEGER,
    LOOKUP_TYPES,
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
    Schema,
    Table,
    boolean,
    metadata_id,
)
from .store import Store
from .tables import add_key, create_table, lookup

CRM = "Microsoft.Dynamics.CRM."
_KIND_BY_METADATA_TYPE = {name: kind for kind, name in METADATA_TYPE.items() if kind not in LOOKUP_TYPES}


def label(text: str) -> dict:
    localized = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": False,
        "MetadataId": metadata_id("label", text),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized] if text else [], "UserLocalizedLabel": localized if text else None}


def label_text(value: Any, default: str = "") -> str:
    """The first localized label of a Label complex value (what a create request carries)."""
    if isinstance(value, dict):
        for localized in value.get("LocalizedLabels") or []:
            if localized.get("Label"):
                return localized["Label"]
    return default


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


def parse_expand(text: str) -> dict[str, dict[str, str]]:
    """`Attributes($select=a,b;$filter=x),Keys` -> {"Attributes": {"$select": "a,b", ...}, "Keys": {}}."""
    items, current, depth = [], "", 0
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    expand = {}
    for item in filter(None, (i.strip() for i in items)):
        name, _, rest = item.partition("(")
        options = {}
        if rest:
            for option in split_outside_quotes(rest.rstrip(")"), ";"):
                key, _, value = option.partition("=")
                options[key.strip()] = value.strip()
        expand[name.strip()] = options
    return expand


def _shape(item: dict, options) -> dict:
    """Apply `$select` (keeping what `$expand` added)."""
    select = options.get("$select")
    if not select:
        return item
    names = {n.strip() for n in select.split(",") if n.strip()}
    for name in names:
        if name not in item:
            raise syntax_error(
                f"Could not find a property named '{name}' on type '{item.get('@odata.type', '')[1:]}'."
            )
    keep = names | parse_expand(options.get("$expand", "")).keys() | {"@odata.type", "MetadataId"}
    return {k: v for k, v in item.items() if k in keep}


def _query(items: list[dict], options) -> list[dict]:
    if options.get("$filter"):

        def resolve(path: str) -> Callable[[dict], Any]:
            def get(item: dict) -> Any:
                value: Any = item
                for part in path.split("/"):
                    value = value.get(part) if isinstance(value, dict) else None
                return value

            return get

        predicate = compile_filter(options["$filter"], resolve)
        items = [i for i in items if predicate(i)]
    return [_shape(i, options) for i in items]


class Metadata:
    def __init__(self, schema: Schema, store: Store, on_table_created: Callable[[Table], None]) -> None:
        self.schema = schema
        self.store = store
        self.on_table_created = on_table_created

    # -- routing ------------------------------------------------------------------------------------------

    def handle(self, call: ApiCall, segments: list[Segment]) -> Reply:
        with self.schema.lock:
            if segments[0].name == "RelationshipDefinitions":
                return self._relationships(call, segments)
            if len(segments) == 1 and segments[0].key is None:
                if call.method == "GET":
                    items = [self._entity(t, call.args) for t in self.schema.tables.values()]
                    return self._list(call, "EntityDefinitions", items, call.args)
                if call.method == "POST":
                    return self.create_table(call)
                raise _method_not_allowed(call)
            table = self._table(segments[0])
            if len(segments) == 1:
                if call.method == "GET":
                    item = self._entity(table, call.args)
                    return json_reply(
                        200,
                        {
                            "@odata.context": f"{call.api_url}$metadata#EntityDefinitions/$entity",
                            **_shape(item, call.args),
                        },
                    )
                if call.method == "PUT":
                    return self.update_table(call, table)
                raise _method_not_allowed(call)
            return self._table_part(call, table, segments[1:])

    def _table(self, segment: Segment) -> Table:
        key = parse_key(segment.key or "")
        if isinstance(key, str):
            table = self.schema.by_metadata_id(key)
            if table is None:
                raise ApiError(
                    404, errors.NOT_FOUND, f"Could not find an entity with the MetadataId '{key}'."
                )
            return table
        if set(key) != {"LogicalName"}:
            raise syntax_error("EntityDefinitions can be addressed by MetadataId or LogicalName only.")
        return self.schema.table(str(key["LogicalName"]))

    def _list(self, call: ApiCall, context: str, items: list[dict], options) -> Reply:
        return json_reply(
            200, {"@odata.context": f"{call.api_url}$metadata#{context}", "value": _query(items, options)}
        )

    def _entity(self, table: Table, options) -> dict:
        item = entity_json(table)
        for name, nested in parse_expand(options.get("$expand", "")).items():
            item[name] = _query(self._navigation(table, name), nested)
        return item

    def _navigation(self, table: Table, name: str) -> list[dict]:
        if name == "Attributes":
            return [attribute_json(table, a) for a in table.attributes.values()]
        if name == "Keys":
            return [key_json(table, k) for k in table.keys.values()]
        if name == "ManyToOneRelationships":
            return [relationship_json(r) for r in table.relationships.values()]
        if name == "OneToManyRelationships":
            return [relationship_json(r) for r in self.schema.one_to_many(table.logical_name)]
        raise syntax_error(f"Could not find a property named '{name}' on type '{CRM}EntityMetadata'.")

    def _table_part(self, call: ApiCall, table: Table, rest: list[Segment]) -> Reply:
        head = rest[0]
        if head.name == "Attributes":
            return self._attributes(call, table, rest)
        if head.name == "Keys":
            if head.key is None and call.method == "POST":
                return self.create_key(call, table)
            keys = [key_json(table, k) for k in table.keys.values()]
            if head.key is not None:
                wanted = parse_key(head.key)
                match = [
                    k
                    for k in keys
                    if k["MetadataId"] == wanted
                    or (isinstance(wanted, dict) and k["LogicalName"] == wanted.get("LogicalName"))
                ]
                if not match:
                    raise ApiError(404, errors.NOT_FOUND, f"Could not find the key '{head.key}'.")
                return json_reply(200, _shape(match[0], call.args))
            return self._list(call, f"EntityDefinitions('{table.logical_name}')/Keys", keys, call.args)
        if head.name in ("ManyToOneRelationships", "OneToManyRelationships") and call.method == "GET":
            return self._list(
                call,
                f"EntityDefinitions('{table.logical_name}')/{head.name}",
                self._navigation(table, head.name),
                call.args,
            )
        raise syntax_error(f"Resource not found for the segment '{head.name}'.")

    def _attributes(self, call: ApiCall, table: Table, rest: list[Segment]) -> Reply:
        head = rest[0]
        cast = rest[1].name if len(rest) > 1 else None
        if cast is not None and not cast.startswith(CRM):
            raise syntax_error(f"Resource not found for the segment '{cast}'.")
        if head.key is None:
            if call.method == "POST" and cast is None:
                return self.create_attribute(call, table)
            attributes = [
                a
                for a in table.attributes.values()
                if cast is None or METADATA_TYPE[a.type] == cast[len(CRM) :]
            ]
            items = [self._attribute(table, a, call.args) for a in attributes]
            return self._list(call, f"EntityDefinitions('{table.logical_name}')/Attributes", items, call.args)
        wanted = parse_key(head.key)
        attribute = next(
            (
                a
                for a in table.attributes.values()
                if a.metadata_id == wanted
                or (isinstance(wanted, dict) and a.logical_name == wanted.get("LogicalName"))
            ),
            None,
        )
        if attribute is None or (cast is not None and METADATA_TYPE[attribute.type] != cast[len(CRM) :]):
            raise ApiError(
                404, errors.NOT_FOUND, f"Could not find attribute '{head.key}' on '{table.logical_name}'."
            )
        item = self._attribute(table, attribute, call.args)
        context = f"{call.api_url}$metadata#EntityDefinitions('{table.logical_name}')/Attributes/$entity"
        return json_reply(200, {"@odata.context": context, **_shape(item, call.args)})

    def _attribute(self, table: Table, attribute: Attribute, options) -> dict:
        item = attribute_json(table, attribute)
        for name, nested in parse_expand(options.get("$expand", "")).items():
            if name == "OptionSet" and (attribute.type in CHOICE_TYPES or attribute.type == BOOLEAN):
                item[name] = _shape(option_set_json(table, attribute), nested)
            elif name == "GlobalOptionSet" and (attribute.type in CHOICE_TYPES or attribute.type == BOOLEAN):
                item[name] = None
            else:
                raise syntax_error(
                    f"Could not find a property named '{name}' on type '{item['@odata.type'][1:]}'."
                )
        return item

    # -- writes -------------------------------------------------------------------------------------------

    def create_table(self, call: ApiCall) -> Reply:
        body = call.json()
        schema_name = body.get("SchemaName") if isinstance(body, dict) else None
        if not schema_name or "_" not in schema_name.strip("_"):
            raise bad_request(
                "A custom table needs a SchemaName with a customization prefix, like 'new_Thing'."
            )
        primaries = [a for a in body.get("Attributes") or [] if a.get("IsPrimaryName")]
        if len(primaries) != 1 or not str(primaries[0].get("@odata.type", "")).endswith(
            "StringAttributeMetadata"
        ):
            raise bad_request(
                "A new table needs exactly one StringAttributeMetadata with IsPrimaryName = true."
            )
        ownership = body.get("OwnershipType", "UserOwned")
        if ownership not in ("UserOwned", "OrganizationOwned"):
            raise bad_request(f"The OwnershipType '{ownership}' is not supported.")
        is_activity = bool(body.get("IsActivity"))
        if is_activity and ownership != "UserOwned":
            raise bad_request("An activity table must be user owned.")
        primary = primaries[0]
        table = create_table(
            self.schema,
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
        self.on_table_created(table)
        return Reply(204, [("OData-EntityId", f"{call.api_url}EntityDefinitions({table.metadata_id})")])

    def update_table(self, call: ApiCall, table: Table) -> Reply:
        body = call.json()
        if not isinstance(body, dict):
            raise bad_request("The request body must be the table definition.")
        tracking = body.get("ChangeTrackingEnabled")
        if tracking is False and table.change_tracking:
            raise bad_request(
                f"Change tracking cannot be disabled once enabled (table '{table.logical_name}')."
            )
        if tracking is True:
            table.change_tracking = True
        if "DisplayName" in body:
            table.display_name = label_text(body["DisplayName"], table.display_name)
        return Reply(204)

    def create_attribute(self, call: ApiCall, table: Table) -> Reply:
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

    def create_key(self, call: ApiCall, table: Table) -> Reply:
        body = call.json()
        columns = body.get("KeyAttributes") if isinstance(body, dict) else None
        if not body.get("SchemaName") or not isinstance(columns, list) or not columns:
            raise bad_request("A key needs a SchemaName and KeyAttributes.")
        key = add_key(
            table, body["SchemaName"], [str(c).lower() for c in columns], label_text(body.get("DisplayName"))
        )
        if not self.store.index_key(table.logical_name, key):
            key.status = "Failed"  # existing rows are not unique: the index job fails, as in Dataverse
        location = f"{call.api_url}EntityDefinitions({table.metadata_id})/Keys({key.metadata_id})"
        return Reply(204, [("OData-EntityId", location)])

    def _relationships(self, call: ApiCall, segments: list[Segment]) -> Reply:
        head = segments[0]
        if call.method == "POST" and head.key is None and len(segments) == 1:
            return self.create_relationship(call)
        if call.method != "GET" or len(segments) != 1:
            raise _method_not_allowed(call)
        relationships = [r for t in self.schema.tables.values() for r in t.relationships.values()]
        if head.key is None:
            return self._list(
                call, "RelationshipDefinitions", [relationship_json(r) for r in relationships], call.args
            )
        wanted = parse_key(head.key)
        match = next(
            (
                r
                for r in relationships
                if r.metadata_id == wanted
                or (
                    isinstance(wanted, dict)
                    and r.schema_name.lower() == str(wanted.get("SchemaName", "")).lower()
                )
            ),
            None,
        )
        if match is None:
            raise ApiError(404, errors.NOT_FOUND, f"Could not find the relationship '{head.key}'.")
        return json_reply(200, _shape(relationship_json(match), call.args))

    def create_relationship(self, call: ApiCall) -> Reply:
        body = call.json()
        if not isinstance(body, dict) or not str(body.get("@odata.type", "")).endswith(
            "OneToManyRelationshipMetadata"
        ):
            raise bad_request(
                "Only OneToManyRelationshipMetadata relationships can be created in the emulator."
            )
        referenced = self.schema.table(str(body.get("ReferencedEntity")))
        referencing = self.schema.table(str(body.get("ReferencingEntity")))
        lookup_body, schema_name = body.get("Lookup") or {}, body.get("SchemaName")
        if not schema_name or not lookup_body.get("SchemaName"):
            raise bad_request("A relationship needs a SchemaName and a Lookup with a SchemaName.")
        if self.schema.relationship(schema_name) is not None:
            raise bad_request(f"A relationship named '{schema_name}' already exists.", errors.DUPLICATE_NAME)
        logical = lookup_body["SchemaName"].lower()
        if logical in referencing.attributes:
            raise bad_request(
                f"A column named '{logical}' already exists on '{referencing.logical_name}'.",
                errors.DUPLICATE_NAME,
            )
        attribute = lookup(
            self.schema,
            referencing,
            logical,
            referenced.logical_name,
            nav=body.get("ReferencingEntityNavigationPropertyName") or lookup_body["SchemaName"],
            relationship=schema_name,
            is_custom=True,
        )
        attribute.schema_name = lookup_body["SchemaName"]
        attribute.display_name = label_text(lookup_body.get("DisplayName"), attribute.schema_name)
        relationship = self.schema.relationship(schema_name)
        if body.get("ReferencedEntityNavigationPropertyName"):
            relationship.referenced_navigation_property = body["ReferencedEntityNavigationPropertyName"]
        return Reply(
            204, [("OData-EntityId", f"{call.api_url}RelationshipDefinitions({relationship.metadata_id})")]
        )


def _method_not_allowed(call: ApiCall) -> ApiError:
    return ApiError(
        405, errors.QUERY_SYNTAX, f"The HTTP method '{call.method}' is not allowed on '{call.path}'."
    )
