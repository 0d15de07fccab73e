"""The `RemoteExecutionContext` JSON a webhook receives, in the shape of WCF's DataContractJsonSerializer:
what a step's context holds for one change (Target, images, the parent context of async steps) and its
key order as the service writes it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .changes import SYSTEM_TARGET_COLUMNS, ChangeEvent
from .odata import new_guid
from .representation import Representation
from .schema import BOOLEAN, DATETIME, MONEY, MULTISELECT, PICKLIST, STATE, STATUS, Attribute, Schema, Table
from .store import Clock

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ENTITY, REFERENCE = f"Entity:{CONTRACTS}", f"EntityReference:{CONTRACTS}"
OPTION, MONEY_TYPE = f"OptionSetValue:{CONTRACTS}", f"Money:{CONTRACTS}"
STRING_PAIR = "KeyValuePairOfstringstring:#System.Collections.Generic"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Organization:
    """The organization every context names; `host` is also the `x-ms-dynamics-organization` header."""

    id: str
    name: str
    host: str
    business_unit_id: str


def wcf_date(value: str | datetime, offset: str = "") -> str:
    """`/Date(<epoch ms>[+-hhmm])/`; stored dates are ISO strings (date-only ones mean midnight UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(
            value.replace("Z", "+00:00") if "T" in value else f"{value}T00:00:00+00:00"
        )
    return f"/Date({(value - _EPOCH) // timedelta(milliseconds=1)}{offset})/"


class ContextWriter:
    """Builds each step's context from the change event it fires for. `row_version` False sends every
    `RowVersion` as null, as in the published sample."""

    def __init__(
        self,
        schema: Schema,
        representation: Representation,
        clock: Clock,
        organization: Organization,
        *,
        row_version: bool = True,
    ) -> None:
        self.schema = schema
        self.representation = representation
        self.clock = clock
        self.organization = organization
        self.row_version = row_version  # False: every RowVersion is null

    def _value(self, attribute: Attribute, value, *, names: bool):
        if value is None:
            return None
        if attribute.is_lookup:
            return {
                "__type": REFERENCE,
                "Id": value[1],
                "KeyAttributes": [],
                "LogicalName": value[0],
                "Name": self.representation.lookup_name(value) if names else None,
                "RowVersion": None,
            }
        if attribute.type in (PICKLIST, STATE, STATUS):
            return {"__type": OPTION, "Value": value}
        if attribute.type == MULTISELECT:
            return [{"__type": OPTION, "Value": int(v)} for v in value.split(",")]
        if attribute.type == MONEY:
            return {"__type": MONEY_TYPE, "Value": value}
        if attribute.type == DATETIME:
            return wcf_date(value)
        return value

    def _entity(
        self,
        table: Table,
        row_id: str,
        values: dict,
        *,
        typed: bool,
        names: bool,
        version: int | None = None,
        with_versionnumber: bool = False,
    ) -> dict:
        """An Entity; `version` becomes its RowVersion (a string, unless `row_version` is off) and a
        `versionnumber` among the values is kept only when `with_versionnumber` (images)."""
        attributes, formatted = [], []
        for name, value in values.items():
            attribute = table.attributes.get(name)
            if attribute is None or not attribute.readable:
                continue
            if name == "versionnumber" and not with_versionnumber:
                continue
            attributes.append({"key": name, "value": self._value(attribute, value, names=names)})
            if value is not None and attribute.type in (PICKLIST, STATE, STATUS, MULTISELECT, MONEY, BOOLEAN):
                formatted.append({"key": name, "value": self.representation.formatted(attribute, value)})
        entity = {"__type": ENTITY} if typed else {}
        entity.update(
            {
                "Attributes": attributes,
                "EntityState": None,
                "FormattedValues": formatted,
                "Id": row_id,
                "KeyAttributes": [],
                "LogicalName": table.logical_name,
                "RelatedEntities": [],
                "RowVersion": str(version) if version is not None and self.row_version else None,
            }
        )
        return entity

    def _reference(self, event: ChangeEvent) -> dict:
        return {
            "__type": REFERENCE,
            "Id": event.row_id,
            "KeyAttributes": [],
            "LogicalName": event.table,
            "Name": None,
            "RowVersion": None,
        }

    def _images(
        self,
        table: Table,
        event: ChangeEvent,
        images: list[dict],
        kinds: set[int],
        row: dict | None,
        version: int | None,
    ) -> list[dict]:
        """The registered images of one kind; `versionnumber` is an attribute when the image lists it
        (or lists no columns, i.e. all of them)."""
        if row is None:
            return []
        result = []
        for image in images:
            if image.get("imagetype") not in kinds:
                continue
            columns = [c.strip().lower() for c in (image.get("attributes") or "").split(",") if c.strip()]
            values = {name: row.get(name) for name in columns} if columns else dict(row)
            values[table.primary_id] = event.row_id
            entity = self._entity(
                table, event.row_id, values, typed=False, names=True, version=version, with_versionnumber=True
            )
            result.append({"key": image.get("entityalias") or image.get("name") or "Image", "value": entity})
        return result

    def context(self, event: ChangeEvent, step: dict, images: list[dict]) -> dict:
        """The RemoteExecutionContext of one step for one event, key order as the service writes it."""
        table = self.schema.tables[event.table]
        mode, stage = step.get("mode", 1), step.get("stage", 40)
        # The version of THIS operation (the delivery may be built after later writes committed).
        version = event.version
        if version is None and event.post is not None:
            version = event.post.get("versionnumber")
        if event.message == "Delete":
            target = self._reference(event)
            parent_target = target
        else:
            target = self._entity(table, event.row_id, event.target, typed=True, names=False, version=version)
            submitted = {k: v for k, v in event.target.items() if k not in SYSTEM_TARGET_COLUMNS}
            parent_target = self._entity(table, event.row_id, submitted, typed=True, names=False)
        output = [{"key": "id", "value": event.row_id}] if event.message == "Create" else []
        post = self._images(table, event, images, {1, 2}, event.post, version)
        if mode == 1 and not post and event.post is not None and table.primary_name:
            primary = {table.primary_name: event.post.get(table.primary_name), table.primary_id: event.row_id}
            post = [
                {
                    "key": "AsynchronousStepPrimaryName",
                    "value": self._entity(
                        table, event.row_id, primary, typed=False, names=True, version=version
                    ),
                }
            ]
        pre_row = event.pre if event.message != "Create" else None
        pre_version = pre_row.get("versionnumber") if pre_row is not None else None
        pre = self._images(table, event, images, {0, 2}, pre_row, pre_version)
        owning = {
            "Id": step["sdkmessageprocessingstepid"],
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": None,
            "RowVersion": None,
        }
        created_on = wcf_date(self.clock.now(), "+0000")

        def frame(
            stage_: int, inputs: list, outputs: list, post_: list, pre_: list, parent, shared: list
        ) -> dict:
            return {
                "BusinessUnitId": self.organization.business_unit_id,
                "CorrelationId": event.correlation_id,
                "Depth": 1,
                "InitiatingUserId": event.user_id,
                "InputParameters": inputs,
                "IsExecutingOffline": False,
                "IsInTransaction": mode == 0,
                "IsOfflinePlayback": False,
                "IsolationMode": 1 if mode == 1 else 2,
                "MessageName": event.message,
                "Mode": mode,
                "OperationCreatedOn": created_on,
                "OperationId": event.operation_id,
                "OrganizationId": self.organization.id,
                "OrganizationName": self.organization.name,
                "OutputParameters": outputs,
                "OwningExtension": owning,
                "ParentContext": parent,
                "PostEntityImages": post_,
                "PreEntityImages": pre_,
                "PrimaryEntityId": event.row_id,
                "PrimaryEntityName": event.table,
                "RequestId": None if mode == 1 else new_guid(),
                "SecondaryEntityName": "none",
                "SharedVariables": shared,
                "Stage": stage_,
                "UserId": event.user_id,
            }

        parent = None
        if mode == 1:  # async steps carry the main operation's context, as in the published sample
            parent_inputs = [{"key": "Target", "value": parent_target}]
            if event.message != "Delete":
                parent_inputs.append({"key": "SuppressDuplicateDetection", "value": False})
            changed = [
                {
                    "key": "ChangedEntityTypes",
                    "value": [{"__type": STRING_PAIR, "key": event.table, "value": event.message}],
                }
            ]
            parent = frame(30, parent_inputs, output, [], [], None, changed)
        return frame(stage, [{"key": "Target", "value": target}], output, post, pre, parent, [])


def serialize(context: dict) -> bytes:
    # WCF's DataContractJsonSerializer escapes every solidus ("\/Date(...)\/", "http:\/\/...").
    return json.dumps(context, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/").encode()
