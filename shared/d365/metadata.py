"""Dataverse table definitions (metadata): read what the sync needs (entity set, primary columns, choice
labels, lookup targets, alternate keys, the "regarding" navigation property of an activity table) and
create tables, columns and keys for the setup command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.d365.odata import id_from_entity_id, key_literal
from shared.errors import NotFoundError
from shared.http import ApiPipeline

# AttributeType -> the typed cast that exposes its option set. Multi-select choices are AttributeType
# "Virtual" with AttributeTypeName "MultiSelectPicklistType"; they are reported as "MultiSelectPicklist".
_OPTION_SET_CASTS = {
    "Picklist": "PicklistAttributeMetadata",
    "MultiSelectPicklist": "MultiSelectPicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
    "Boolean": "BooleanAttributeMetadata",
}
_LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
# Creating a table or column can take minutes on a real organisation.
_METADATA_WRITE_READ_TIMEOUT = 600.0


@dataclass(frozen=True)
class AttributeMetadata:
    logical_name: str
    type: str
    options: dict[int, str] = field(default_factory=dict)
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableMetadata:
    logical_name: str
    entity_set_name: str
    primary_id: str
    primary_name: str | None
    change_tracking_enabled: bool
    is_activity: bool
    attributes: dict[str, AttributeMetadata]
    metadata_id: str | None = None


@dataclass(frozen=True)
class AlternateKey:
    logical_name: str
    schema_name: str | None
    key_attributes: tuple[str, ...]
    # Active, Pending, InProgress or Failed: a key is usable for upserts only once Active.
    index_status: str | None


def _label(label: Mapping[str, Any] | None, fallback: str) -> str:
    if not label:
        return fallback
    user = label.get("UserLocalizedLabel") or {}
    if user.get("Label"):
        return user["Label"]
    localized = label.get("LocalizedLabels") or []
    return localized[0].get("Label", fallback) if localized else fallback


def _options(option_set: Mapping[str, Any] | None) -> dict[int, str]:
    if not option_set:
        return {}
    options = list(option_set.get("Options") or [])
    # Two-option (Boolean) columns carry TrueOption/FalseOption instead of Options.
    options += [option_set[name] for name in ("FalseOption", "TrueOption") if option_set.get(name)]
    return {int(o["Value"]): _label(o.get("Label"), str(o["Value"])) for o in options if "Value" in o}


def _attribute_type(attribute: Mapping[str, Any]) -> str:
    type_name = (attribute.get("AttributeTypeName") or {}).get("Value")
    if type_name == "MultiSelectPicklistType":
        return "MultiSelectPicklist"
    return attribute.get("AttributeType") or type_name or "Unknown"


class MetadataClient:
    """Metadata operations; reached as `DataverseClient.metadata`."""

    def __init__(self, pipeline: ApiPipeline) -> None:
        self._pipeline = pipeline

    @staticmethod
    def _definition(logical_name: str) -> str:
        return f"EntityDefinitions(LogicalName={key_literal(logical_name)})"

    def _get(self, path: str) -> Any:
        return self._pipeline.request("GET", path).json()

    def _write(
        self, method: str, path: str, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> str | None:
        response = self._pipeline.request(
            method,
            path,
            json=body,
            headers=headers,
            timeout=(self._pipeline.timeout[0], _METADATA_WRITE_READ_TIMEOUT),
        )
        return id_from_entity_id(response.headers.get("OData-EntityId"))

    @staticmethod
    def _solution_header(solution: str | None) -> dict[str, str]:
        return {"MSCRM.SolutionUniqueName": solution} if solution else {}

    def table_metadata(self, logical_name: str) -> TableMetadata:
        """The table's definition with every column; choice labels and lookup targets are read with one
        typed-cast query per column type present, not one per column."""
        definition = self._get(
            self._definition(logical_name)
            + "?$select=LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,"
            "ChangeTrackingEnabled,IsActivity,MetadataId"
            "&$expand=Attributes($select=LogicalName,AttributeType,AttributeTypeName)"
        )
        types = {a["LogicalName"]: _attribute_type(a) for a in definition.get("Attributes") or []}
        options: dict[str, dict[int, str]] = {}
        for kind in sorted(set(types.values()) & _OPTION_SET_CASTS.keys()):
            for item in self._cast(
                logical_name, _OPTION_SET_CASTS[kind], "$select=LogicalName&$expand=OptionSet"
            ):
                options[item["LogicalName"]] = _options(item.get("OptionSet"))
        targets: dict[str, tuple[str, ...]] = {}
        if set(types.values()) & _LOOKUP_TYPES:
            for item in self._cast(logical_name, "LookupAttributeMetadata", "$select=LogicalName,Targets"):
                targets[item["LogicalName"]] = tuple(item.get("Targets") or ())
        return TableMetadata(
            logical_name=definition["LogicalName"],
            entity_set_name=definition["EntitySetName"],
            primary_id=definition["PrimaryIdAttribute"],
            primary_name=definition.get("PrimaryNameAttribute"),
            change_tracking_enabled=bool(definition.get("ChangeTrackingEnabled")),
            is_activity=bool(definition.get("IsActivity")),
            attributes={
                name: AttributeMetadata(
                    logical_name=name,
                    type=kind,
                    options=options.get(name, {}),
                    targets=targets.get(name, ()),
                )
                for name, kind in types.items()
            },
            metadata_id=definition.get("MetadataId"),
        )

    def _cast(self, logical_name: str, cast: str, query: str) -> list[dict[str, Any]]:
        path = f"{self._definition(logical_name)}/Attributes/Microsoft.Dynamics.CRM.{cast}?{query}"
        return self._get(path).get("value", [])

    def regarding_navigation_property(self, activity_logical_name: str, target: str = "contact") -> str:
        """The single-valued navigation property that binds an activity's `regardingobjectid` to `target`,
        e.g. `regardingobjectid_contact_cr123_emailopen` (use it as `<name>@odata.bind`)."""
        definition = self._get(
            self._definition(activity_logical_name) + "?$select=LogicalName&$expand=ManyToOneRelationships"
        )
        for relationship in definition.get("ManyToOneRelationships") or []:
            if (
                relationship.get("ReferencedEntity") == target
                and relationship.get("ReferencingAttribute") == "regardingobjectid"
            ):
                return relationship["ReferencingEntityNavigationPropertyName"]
        raise NotFoundError(
            f"{activity_logical_name} has no regardingobjectid relationship to {target}", service="dataverse"
        )

    def alternate_keys(self, logical_name: str) -> list[AlternateKey]:
        payload = self._get(
            self._definition(logical_name)
            + "/Keys?$select=LogicalName,SchemaName,KeyAttributes,EntityKeyIndexStatus"
        )
        return [
            AlternateKey(
                logical_name=key["LogicalName"],
                schema_name=key.get("SchemaName"),
                key_attributes=tuple(key.get("KeyAttributes") or ()),
                index_status=key.get("EntityKeyIndexStatus"),
            )
            for key in payload.get("value", [])
        ]

    def create_table(self, definition: Mapping[str, Any], *, solution: str | None = None) -> str | None:
        """POST an EntityMetadata definition (with its primary name attribute); returns its MetadataId."""
        return self._write("POST", "EntityDefinitions", definition, self._solution_header(solution))

    def create_attribute(
        self, table: str, definition: Mapping[str, Any], *, solution: str | None = None
    ) -> str | None:
        """POST an AttributeMetadata definition (with its `@odata.type`); returns its MetadataId."""
        return self._write(
            "POST", f"{self._definition(table)}/Attributes", definition, self._solution_header(solution)
        )

    def create_alternate_key(
        self, table: str, definition: Mapping[str, Any], *, solution: str | None = None
    ) -> str | None:
        """POST an EntityKeyMetadata definition (`SchemaName`, `DisplayName`, `KeyAttributes`)."""
        return self._write(
            "POST", f"{self._definition(table)}/Keys", definition, self._solution_header(solution)
        )

    def set_change_tracking(self, table: str, enabled: bool = True) -> bool:
        """Turn change tracking on (Dataverse cannot turn it off again). Table definitions are replaced
        whole with PUT, so the current definition is read, changed and written back with labels merged.
        Returns False when nothing had to change."""
        definition = self._get(self._definition(table))
        if bool(definition.get("ChangeTrackingEnabled")) == enabled:
            return False
        definition = {k: v for k, v in definition.items() if not k.startswith("@odata.")}
        definition["ChangeTrackingEnabled"] = enabled
        self._write("PUT", self._definition(table), definition, {"MSCRM.MergeLabels": "true"})
        return True
