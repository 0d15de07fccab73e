"""Rows as Web API JSON: `@odata.etag`, lookups as `_x_value`, and the instance annotations
(formatted values, lookup logical names, associated navigation properties) when asked for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .odata import Prefer
from .schema import (
    BIGINT,
    BOOLEAN,
    DATETIME,
    DECIMAL,
    DOUBLE,
    INTEGER,
    MONEY,
    MULTISELECT,
    PICKLIST,
    STATE,
    STATUS,
    Attribute,
    Schema,
    Table,
)
from .store import Store

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"


def etag(row: dict) -> str:
    return f'W/"{row["versionnumber"]}"'


def format_datetime(value: str, date_only: bool) -> str:
    if date_only:
        year, month, day = value[:10].split("-")
        return f"{int(month)}/{int(day)}/{year}"
    moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    hour, half = moment.hour % 12 or 12, "PM" if moment.hour >= 12 else "AM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d} {half}"


def plain_row(table: Table, row: dict) -> dict:
    """Column logical name -> value, lookups reduced to the referenced id (what tests compare against)."""
    plain = {}
    for attribute in table.attributes.values():
        if attribute.readable:
            value = row.get(attribute.logical_name)
            plain[attribute.logical_name] = value[1] if attribute.is_lookup and value is not None else value
    return plain


class Representation:
    def __init__(self, schema: Schema, store: Store) -> None:
        self.schema = schema
        self.store = store

    def lookup_name(self, reference: tuple[str, str]) -> str | None:
        table = self.schema.tables.get(reference[0])
        row = self.store.get(reference[0], reference[1])
        if table is None or row is None or not table.primary_name:
            return None
        return row.get(table.primary_name)

    def formatted(self, attribute: Attribute, value) -> str | None:
        """The label Dataverse shows for a value (None when it has no formatted form)."""
        if value is None:
            return None
        kind = attribute.type
        if kind in (PICKLIST, STATE, STATUS):
            return attribute.label_of(value)
        if kind == BOOLEAN:
            return attribute.label_of(int(value))
        if kind == MULTISELECT:
            return "; ".join(attribute.label_of(int(v)) or v for v in value.split(","))
        if kind == MONEY:
            return f"${value:,.2f}"
        if kind in (INTEGER, BIGINT):
            return f"{value:,}"
        if kind in (DECIMAL, DOUBLE):
            return f"{value:,.2f}"
        if kind == DATETIME:
            return format_datetime(value, attribute.date_only)
        if attribute.is_lookup:
            return self.lookup_name(value)
        return None

    def navigation_of(self, table: Table, attribute: Attribute, target: str) -> str | None:
        return next(
            (
                nav
                for nav, relationship in table.relationships.items()
                if relationship.referencing_attribute == attribute.logical_name
                and relationship.referenced_entity == target
            ),
            None,
        )

    def serializer(
        self, table: Table, select: list[Attribute] | None = None, prefer: Prefer | None = None
    ) -> Callable[[dict], dict]:
        """A function row -> JSON dict for these columns; build once per page, call per row."""
        columns = [a for a in (select or table.attributes.values())]
        primary = table.attributes[table.primary_id]
        if primary not in columns:
            columns.append(primary)
        plan = [(a.odata_name, a.logical_name, a.is_lookup, a.readable) for a in columns]
        prefer = prefer or Prefer()
        with_formatted = prefer.wants(FORMATTED)
        with_lookup_names = prefer.wants(LOOKUP_NAME)
        with_navigation = prefer.wants(NAVIGATION)
        annotated = with_formatted or with_lookup_names or with_navigation

        def serialize(row: dict) -> dict:
            out = {"@odata.etag": etag(row)}
            for key, name, is_lookup, readable in plan:
                value = row.get(name) if readable else None
                out[key] = value[1] if is_lookup and value is not None else value
            if annotated:
                for attribute in columns:
                    value = row.get(attribute.logical_name)
                    if value is None or not attribute.readable:
                        continue
                    key = attribute.odata_name
                    if with_formatted:
                        label = self.formatted(attribute, value)
                        if label is not None:
                            out[f"{key}@{FORMATTED}"] = label
                    if attribute.is_lookup:
                        if with_navigation:
                            out[f"{key}@{NAVIGATION}"] = self.navigation_of(table, attribute, value[0])
                        if with_lookup_names:
                            out[f"{key}@{LOOKUP_NAME}"] = value[0]
            return out

        return serialize
