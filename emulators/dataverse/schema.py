"""Table definitions (the emulator's metadata): columns with their types, choices, lookups with their
navigation properties, alternate keys and the change-tracking flag."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from .errors import DUPLICATE_NAME, ApiError, bad_request

_NS = uuid.UUID("6f1c1f1e-5b0a-4c59-9d5b-0d6b5e0a1c01")

# AttributeType values of the Web API, with the AttributeTypeName and the metadata @odata.type.
STRING, MEMO, INTEGER, BIGINT = "String", "Memo", "Integer", "BigInt"
DECIMAL, DOUBLE, MONEY, BOOLEAN, DATETIME = "Decimal", "Double", "Money", "Boolean", "DateTime"
PICKLIST, STATE, STATUS, MULTISELECT = "Picklist", "State", "Status", "MultiSelectPicklist"
LOOKUP, CUSTOMER, OWNER = "Lookup", "Customer", "Owner"
UNIQUEIDENTIFIER, ENTITYNAME = "Uniqueidentifier", "EntityName"

LOOKUP_TYPES = frozenset({LOOKUP, CUSTOMER, OWNER})
CHOICE_TYPES = frozenset({PICKLIST, STATE, STATUS, MULTISELECT})
METADATA_TYPE = {
    STRING: "StringAttributeMetadata",
    MEMO: "MemoAttributeMetadata",
    INTEGER: "IntegerAttributeMetadata",
    BIGINT: "BigIntAttributeMetadata",
    DECIMAL: "DecimalAttributeMetadata",
    DOUBLE: "DoubleAttributeMetadata",
    MONEY: "MoneyAttributeMetadata",
    BOOLEAN: "BooleanAttributeMetadata",
    DATETIME: "DateTimeAttributeMetadata",
    PICKLIST: "PicklistAttributeMetadata",
    STATE: "StateAttributeMetadata",
    STATUS: "StatusAttributeMetadata",
    MULTISELECT: "MultiSelectPicklistAttributeMetadata",
    LOOKUP: "LookupAttributeMetadata",
    CUSTOMER: "LookupAttributeMetadata",
    OWNER: "LookupAttributeMetadata",
    UNIQUEIDENTIFIER: "UniqueIdentifierAttributeMetadata",
    ENTITYNAME: "EntityNameAttributeMetadata",
}
TYPE_NAME = {kind: f"{kind}Type" for kind in METADATA_TYPE} | {
    UNIQUEIDENTIFIER: "UniqueidentifierType",
    MULTISELECT: "MultiSelectPicklistType",
}
DEFAULT_MAX_LENGTH = {STRING: 100, MEMO: 2000}
INT_RANGE = (-2147483648, 2147483647)


def metadata_id(*parts: str) -> str:
    """A stable MetadataId, so definitions look the same on every run."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


@dataclass
class Option:
    value: int
    label: str
    state: int | None = None  # for Status options: the State they belong to
    default_status: int | None = None  # for State options


@dataclass
class Attribute:
    logical_name: str
    type: str
    table: str = ""
    schema_name: str = ""
    display_name: str = ""
    max_length: int | None = None
    options: list[Option] = field(default_factory=list)  # choices; Boolean uses 0 (false) and 1 (true)
    targets: tuple[str, ...] = ()  # lookups
    date_only: bool = False
    writable: bool = True
    readable: bool = True
    is_custom: bool = False
    is_primary_id: bool = False
    is_primary_name: bool = False
    metadata_id: str = ""

    def __post_init__(self) -> None:
        self.schema_name = self.schema_name or self.logical_name
        self.display_name = self.display_name or self.logical_name
        if self.max_length is None:
            self.max_length = DEFAULT_MAX_LENGTH.get(self.type)
        self.metadata_id = self.metadata_id or metadata_id(self.table, self.logical_name)

    @property
    def is_lookup(self) -> bool:
        return self.type in LOOKUP_TYPES

    @property
    def odata_name(self) -> str:
        """The property name in Web API JSON (`_x_value` for lookups)."""
        return f"_{self.logical_name}_value" if self.is_lookup else self.logical_name

    def label_of(self, value) -> str | None:
        for option in self.options:
            if option.value == value:
                return option.label
        return None


@dataclass
class Relationship:
    """A one-to-many relationship seen from the referencing (many) side, i.e. a lookup column."""

    schema_name: str
    referenced_entity: str
    referenced_attribute: str
    referencing_entity: str
    referencing_attribute: str
    navigation_property: str  # ReferencingEntityNavigationPropertyName, used in `<nav>@odata.bind`
    referenced_navigation_property: str = ""
    is_custom: bool = False
    metadata_id: str = ""

    def __post_init__(self) -> None:
        self.referenced_navigation_property = self.referenced_navigation_property or self.schema_name
        self.metadata_id = self.metadata_id or metadata_id("relationship", self.schema_name)


@dataclass
class Key:
    schema_name: str
    attributes: list[str]
    table: str
    display_name: str = ""
    status: str = "Active"
    metadata_id: str = ""

    def __post_init__(self) -> None:
        self.display_name = self.display_name or self.schema_name
        self.metadata_id = self.metadata_id or metadata_id(self.table, "key", self.schema_name.lower())

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()


@dataclass
class Table:
    logical_name: str
    entity_set: str
    primary_id: str
    primary_name: str | None
    attributes: dict[str, Attribute] = field(default_factory=dict)
    relationships: dict[str, Relationship] = field(default_factory=dict)  # by navigation property
    keys: dict[str, Key] = field(default_factory=dict)
    change_tracking: bool = False
    is_activity: bool = False
    has_activities: bool = False
    ownership: str = "UserOwned"
    is_custom: bool = False
    read_only: bool = False  # system tables served for reading only
    schema_name: str = ""
    display_name: str = ""
    display_collection_name: str = ""
    object_type_code: int = 0
    metadata_id: str = ""

    def __post_init__(self) -> None:
        self.schema_name = self.schema_name or self.logical_name
        self.display_name = self.display_name or self.logical_name
        self.display_collection_name = self.display_collection_name or self.entity_set
        self.metadata_id = self.metadata_id or metadata_id("table", self.logical_name)

    def add(self, attribute: Attribute) -> Attribute:
        attribute.table = self.logical_name
        attribute.metadata_id = metadata_id(self.logical_name, attribute.logical_name)
        self.attributes[attribute.logical_name] = attribute
        return attribute

    def attribute(self, name: str) -> Attribute:
        try:
            return self.attributes[name]
        except KeyError:
            raise ApiError(
                400,
                "0x80060888",
                f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{self.logical_name}'. "
                "Make sure to only use property names that are defined by the type.",
            ) from None

    def by_odata_name(self, name: str) -> Attribute | None:
        if name.startswith("_") and name.endswith("_value"):
            attribute = self.attributes.get(name[1:-6])
            return attribute if attribute is not None and attribute.is_lookup else None
        attribute = self.attributes.get(name)
        return attribute if attribute is not None and not attribute.is_lookup else None

    def default_status(self, state: int) -> int | None:
        status = self.attributes.get("statuscode")
        if status is None:
            return None
        return next((o.value for o in status.options if o.state == state), None)


def picklist(*labels: tuple[int, str]) -> list[Option]:
    return [Option(value, label) for value, label in labels]


def boolean(false_label: str = "No", true_label: str = "Yes") -> list[Option]:
    return [Option(0, false_label), Option(1, true_label)]


class Schema:
    """All tables, by logical name and by entity set name. Shares the store's lock (one lock, no lock
    ordering to get wrong between metadata writes and data transactions)."""

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self.tables: dict[str, Table] = {}
        self._by_set: dict[str, Table] = {}
        self.lock = lock or threading.RLock()
        self._next_type_code = 10000

    def add(self, table: Table) -> Table:
        with self.lock:
            if table.logical_name in self.tables:
                raise ApiError(
                    400,
                    DUPLICATE_NAME,
                    f"An entity with the specified name {table.logical_name} already exists.",
                )
            if table.entity_set in self._by_set:
                raise bad_request(f"The entity set name '{table.entity_set}' is already in use.")
            if not table.object_type_code:
                table.object_type_code = self._next_type_code
                self._next_type_code += 1
            self.tables[table.logical_name] = table
            self._by_set[table.entity_set] = table
            return table

    def table(self, logical_name: str) -> Table:
        try:
            return self.tables[logical_name]
        except KeyError:
            raise ApiError(
                404, "0x80040217", f"Could not find an entity with the name '{logical_name}'."
            ) from None

    def by_set(self, entity_set: str) -> Table | None:
        return self._by_set.get(entity_set)

    def by_metadata_id(self, value: str) -> Table | None:
        return next((t for t in self.tables.values() if t.metadata_id == value.lower()), None)

    def relate(self, relationship: Relationship) -> None:
        """Register a lookup's navigation property on its referencing table."""
        with self.lock:
            referencing = self.tables[relationship.referencing_entity]
            referencing.relationships[relationship.navigation_property] = relationship

    def one_to_many(self, logical_name: str) -> list[Relationship]:
        return [
            r
            for t in self.tables.values()
            for r in t.relationships.values()
            if r.referenced_entity == logical_name
        ]

    def relationship(self, schema_name: str) -> Relationship | None:
        return next(
            (
                r
                for t in self.tables.values()
                for r in t.relationships.values()
                if r.schema_name.lower() == schema_name.lower()
            ),
            None,
        )
