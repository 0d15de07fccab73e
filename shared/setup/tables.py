"""What `d365 setup` checks in table metadata: the Campaign email activity tables (each with its columns
and the event-id alternate key) and change tracking on every mapped Dynamics table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.d365.client import DataverseClient
from shared.d365.odata import key_literal
from shared.mapping.model import EVENT_TYPES, ActivityTables, TableMapping
from shared.setup.action import SetupAction
from shared.setup.activities import (
    EVENT_ID_COLUMN,
    EVENT_ID_KEY,
    column_definition,
    columns_for,
    key_definition,
    table_definition,
)


def activity_table_actions(
    dataverse: DataverseClient, activity_tables: ActivityTables, *, solution: str | None
) -> list[SetupAction]:
    """The four activity tables named in the sync config, each with its columns and event-id key.

    :param solution: unique name of the solution new tables and columns are added to; None: the
        organisation's default solution."""
    metadata = dataverse.metadata
    actions = []
    for event_type in EVENT_TYPES:
        table = getattr(activity_tables, event_type)
        definition = _definition(
            dataverse,
            table,
            "?$select=LogicalName,IsActivity&$expand=Attributes($select=LogicalName),"
            "Keys($select=LogicalName,KeyAttributes,EntityKeyIndexStatus)",
        )
        if definition is not None and not definition.get("IsActivity"):
            actions.append(
                SetupAction(
                    "warning",
                    f"table {table}",
                    "exists but is not an activity table; point events.activity_tables elsewhere",
                )
            )
            continue
        if definition is None:
            actions.append(
                SetupAction(
                    "create",
                    f"table {table}",
                    f"activity table for Campaign email {event_type} events",
                    lambda t=table, e=event_type: metadata.create_table(
                        table_definition(t, e), solution=solution
                    ),
                )
            )
            present: set[str] = set()
            keys: list[dict[str, Any]] = []
        else:
            present = {a["LogicalName"] for a in definition.get("Attributes") or []}
            keys = definition.get("Keys") or []
        for column in columns_for(event_type):
            if column.logical_name in present:
                continue
            actions.append(
                SetupAction(
                    "create",
                    f"column {table}.{column.logical_name}",
                    f"text({column.max_length})",
                    lambda t=table, c=column: metadata.create_attribute(
                        t, column_definition(c), solution=solution
                    ),
                )
            )
        key = next((k for k in keys if list(k.get("KeyAttributes") or []) == [EVENT_ID_COLUMN]), None)
        if key is None:
            actions.append(
                SetupAction(
                    "create",
                    f"key {table}.{EVENT_ID_KEY}",
                    f"alternate key on {EVENT_ID_COLUMN}: one activity per event",
                    lambda t=table: metadata.create_alternate_key(t, key_definition(), solution=solution),
                )
            )
        elif key.get("EntityKeyIndexStatus") == "Failed":
            actions.append(
                SetupAction(
                    "warning",
                    f"key {table}.{key['LogicalName']}",
                    "its index job failed (duplicate event ids?); fix the data and reactivate the key",
                )
            )
        elif definition is not None and present >= {c.logical_name for c in columns_for(event_type)}:
            status = key.get("EntityKeyIndexStatus") or "Active"
            actions.append(SetupAction("ok", f"table {table}", f"columns and key in place (key {status})"))
    return actions


def change_tracking_actions(dataverse: DataverseClient, tables: Iterable[TableMapping]) -> list[SetupAction]:
    """Change tracking on every mapped Dynamics table, which the contacts_sync timer reads changes by."""
    actions = []
    for mapping in tables:
        table = mapping.d365_table
        definition = _definition(
            dataverse, table, "?$select=LogicalName,ChangeTrackingEnabled,CanChangeTrackingBeEnabled"
        )
        target = f"change tracking on {table}"
        if definition is None:
            actions.append(SetupAction("warning", target, "the table does not exist in Dynamics"))
        elif definition.get("ChangeTrackingEnabled"):
            actions.append(SetupAction("ok", target))
        elif not (definition.get("CanChangeTrackingBeEnabled") or {}).get("Value", True):
            actions.append(
                SetupAction(
                    "warning",
                    target,
                    "this table does not allow change tracking: only the webhook will see its changes",
                )
            )
        else:
            actions.append(
                SetupAction(
                    "enable",
                    target,
                    "needed by the contacts_sync timer (cannot be turned off again)",
                    lambda t=table: dataverse.metadata.set_change_tracking(t),
                )
            )
    return actions


def _definition(dataverse: DataverseClient, table: str, query: str) -> dict[str, Any] | None:
    """The table's EntityDefinition, as much of it as `query` asks for; None: no such table."""
    response = dataverse.pipeline.request(
        "GET", f"EntityDefinitions(LogicalName={key_literal(table)}){query}", ok_statuses=(404,)
    )
    return None if response.status_code == 404 else response.json()
