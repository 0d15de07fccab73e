"""`d365 setup`: what Adobe needed consultants for, as one idempotent pass over the Dataverse Web API.

- the four Campaign email activity tables, their columns and the event-id alternate key, if absent;
- change tracking on every mapped Dynamics table (tables where it cannot be enabled are reported);
- the webhook: one `serviceendpoint` (the `webhook_d365` URL, authenticated with the function key) and,
  per mapped table, one asynchronous post-operation step per message (Create, Update, Delete) filtered
  on the mapped columns, with the post image the ingress flow reads. Steps are found again by name, so
  a second run updates what changed and duplicates nothing; steps of tables no longer mapped are removed.

`plan()` only reads and answers the actions; `apply()` carries them out in order; `run(dry_run=...)`
does both. Actions that change nothing (`ok`, `skip`, `warning`) are listed too, so the output shows
everything that was checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.d365.client import DataverseClient
from shared.d365.odata import key_literal
from shared.mapping.engine import MappingEngine
from shared.mapping.model import EVENT_TYPES, SyncConfig, TableMapping
from shared.setup.activities import (
    EVENT_ID_COLUMN,
    EVENT_ID_KEY,
    column_definition,
    columns_for,
    key_definition,
    table_definition,
)

ENDPOINT_NAME = "acsd365-webhook"
STEP_PREFIX = "acsd365: "
MESSAGES = ("Create", "Update", "Delete")
IMAGE_NAME = "PostImage"
# The message property a post image is taken from (Delete needs none: the ingress only reads the id).
IMAGE_PROPERTY = {"Create": "Id", "Update": "Target"}
WEBHOOK_CONTRACT = 8
AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER = 4, 5
JSON_FORMAT = 2
ASYNCHRONOUS, POST_OPERATION, POST_IMAGE = 1, 40, 1
FUNCTION_KEY_HEADER = "x-functions-key"
# Columns every update touches: no step filters on them (any change would fire it), every post image
# carries them (the ingress orders a delivery by them when the Target's RowVersion is null).
_UNFILTERED = frozenset({"versionnumber", "modifiedon"})
_OPTOUT_FROM_D365 = frozenset({"d365_to_acs", "bidirectional"})


@dataclass(frozen=True)
class SetupAction:
    """One thing checked. `verb`: create / update / enable / delete (changes), ok, skip or warning."""

    verb: str
    target: str
    detail: str = ""
    apply: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def changes(self) -> bool:
        return self.apply is not None

    def describe(self, *, dry_run: bool = False) -> str:
        verb = f"would {self.verb}" if dry_run and self.changes else self.verb
        return f"{verb:<15} {self.target}" + (f" — {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class WebhookTarget:
    """Where Dataverse posts changes: the `webhook_d365` URL and the function key. With a shared secret
    (app setting WEBHOOK_SHARED_SECRET) both go in headers, since WebhookKey auth carries one value only."""

    url: str
    function_key: str = field(repr=False)
    shared_secret: str | None = field(default=None, repr=False)
    secret_header: str = "x-acsd365-secret"

    def auth(self) -> tuple[int, str]:
        if self.shared_secret is None:
            return AUTH_WEBHOOK_KEY, self.function_key
        settings = "".join(
            f'<setting name="{_xml(name)}" value="{_xml(value)}" />'
            for name, value in (
                (FUNCTION_KEY_HEADER, self.function_key),
                (self.secret_header, self.shared_secret),
            )
        )
        return AUTH_HTTP_HEADER, f"<settings>{settings}</settings>"

    def fingerprint(self) -> str:
        """Tells whether the registered credentials are ours without reading them back (Dataverse never
        returns `authvalue`); a digest, so the description reveals nothing usable."""
        authtype, value = self.auth()
        return hashlib.sha256(f"{authtype}:{value}".encode()).hexdigest()[:16]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _columns(text: str | None) -> frozenset[str]:
    return frozenset(c.strip().lower() for c in (text or "").split(",") if c.strip())


class D365Setup:
    def __init__(
        self,
        *,
        dataverse: DataverseClient,
        config: SyncConfig,
        webhook: WebhookTarget | None = None,
        optout_direction: str | None = None,
        solution: str | None = None,
    ) -> None:
        """:param optout_direction: the app setting's override of the sync config's opt-out direction.
        :param solution: unique name of the solution new tables and columns are added to (its publisher's
            prefix must match the `acs_` names); None: the organisation's default solution."""
        self.dataverse = dataverse
        self.config = config
        self.webhook = webhook
        self.optout_direction = optout_direction or config.optout.direction
        self.solution = solution
        # Ids learned while applying (an endpoint or step created a moment earlier).
        self._ids: dict[str, str] = {}

    def run(self, *, dry_run: bool = False) -> list[SetupAction]:
        actions = self.plan()
        if not dry_run:
            self.apply(actions)
        return actions

    def plan(self) -> list[SetupAction]:
        self._ids.clear()
        return [*self._activity_tables(), *self._change_tracking(), *self._webhook()]

    @staticmethod
    def apply(actions: Iterable[SetupAction]) -> None:
        for action in actions:
            if action.apply is not None:
                action.apply()

    # -- reading -----------------------------------------------------------------------------------

    def _definition(self, table: str, query: str) -> dict[str, Any] | None:
        response = self.dataverse.pipeline.request(
            "GET", f"EntityDefinitions(LogicalName={key_literal(table)}){query}", ok_statuses=(404,)
        )
        return None if response.status_code == 404 else response.json()

    def _rows(self, entity_set: str, select: list[str], condition: str) -> list[dict[str, Any]]:
        return [
            row
            for page in self.dataverse.iter_pages(entity_set, select=select, filter=condition)
            for row in page.rows
        ]

    # -- activity tables ---------------------------------------------------------------------------

    def _activity_tables(self) -> list[SetupAction]:
        metadata = self.dataverse.metadata
        actions = []
        for event_type in EVENT_TYPES:
            table = getattr(self.config.events.activity_tables, event_type)
            definition = self._definition(
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
                            table_definition(t, e), solution=self.solution
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
                            t, column_definition(c), solution=self.solution
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
                        lambda t=table: metadata.create_alternate_key(
                            t, key_definition(), solution=self.solution
                        ),
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
                actions.append(
                    SetupAction("ok", f"table {table}", f"columns and key in place (key {status})")
                )
        return actions

    # -- change tracking ---------------------------------------------------------------------------

    def _change_tracking(self) -> list[SetupAction]:
        actions = []
        for mapping in self.config.tables:
            table = mapping.d365_table
            definition = self._definition(
                table, "?$select=LogicalName,ChangeTrackingEnabled,CanChangeTrackingBeEnabled"
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
                        lambda t=table: self.dataverse.metadata.set_change_tracking(t),
                    )
                )
        return actions

    # -- webhook -----------------------------------------------------------------------------------

    def mapped_columns(self, mapping: TableMapping) -> list[str]:
        """The columns whose change matters to the ingress: the step's filtering attributes and image."""
        pairs = (
            self.config.optout.pairs
            if mapping.d365_table == "contact" and self.optout_direction in _OPTOUT_FROM_D365
            else ()
        )
        engine = MappingEngine(mapping, optout_pairs=pairs)
        return sorted(set(engine.source_columns) - _UNFILTERED)

    def _webhook(self) -> list[SetupAction]:
        if self.webhook is None:
            return [
                SetupAction(
                    "skip",
                    "webhook registration",
                    "pass --webhook-url and --function-key to register the webhook_d365 endpoint",
                )
            ]
        actions = [self._endpoint_action()]
        endpoint_id = self._ids.get("endpoint")
        messages = {
            row["name"]: row["sdkmessageid"]
            for row in self._rows(
                "sdkmessages",
                ["sdkmessageid", "name"],
                " or ".join(f"name eq '{message}'" for message in MESSAGES),
            )
        }
        existing = self._existing_steps(endpoint_id) if endpoint_id else {}
        wanted: set[str] = set()
        for mapping in self.config.tables:
            if not mapping.enabled:
                continue
            columns = self.mapped_columns(mapping)
            for message in MESSAGES:
                name = f"{STEP_PREFIX}{message} of {mapping.d365_table}"
                wanted.add(name)
                actions += self._step_actions(name, mapping.d365_table, message, messages, columns, existing)
        for name, step in sorted(existing.items()):
            if name not in wanted:
                actions.append(
                    SetupAction(
                        "delete",
                        f"step '{name}'",
                        "its table is no longer mapped",
                        lambda i=step["sdkmessageprocessingstepid"]: self.dataverse.delete(
                            "sdkmessageprocessingsteps", i
                        ),
                    )
                )
        return actions

    def _endpoint_action(self) -> SetupAction:
        assert self.webhook is not None
        authtype, authvalue = self.webhook.auth()
        description = f"Managed by `shared.cli d365 setup`; credentials {self.webhook.fingerprint()}"
        desired = {
            "name": ENDPOINT_NAME,
            "contract": WEBHOOK_CONTRACT,
            "url": self.webhook.url,
            "authtype": authtype,
            "authvalue": authvalue,
            "messageformat": JSON_FORMAT,
            "description": description,
        }
        rows = self._rows(
            "serviceendpoints",
            ["serviceendpointid", "name", "url", "contract", "authtype", "description"],
            f"name eq '{ENDPOINT_NAME}'",
        )
        target = f"webhook endpoint '{ENDPOINT_NAME}'"
        shown = f"{self.webhook.url} ({'WebhookKey' if authtype == AUTH_WEBHOOK_KEY else 'HttpHeader'})"
        if not rows:

            def create() -> None:
                self._ids["endpoint"] = self.dataverse.create("serviceendpoints", desired)

            return SetupAction("create", target, shown, create)
        current = rows[0]
        self._ids["endpoint"] = current["serviceendpointid"]
        compared = ("url", "contract", "authtype", "description")
        if all(current.get(name) == desired[name] for name in compared):
            return SetupAction("ok", target, self.webhook.url)
        return SetupAction(
            "update",
            target,
            shown,
            lambda: self.dataverse.update("serviceendpoints", current["serviceendpointid"], desired),
        )

    def _existing_steps(self, endpoint_id: str) -> dict[str, dict[str, Any]]:
        steps = self._rows(
            "sdkmessageprocessingsteps",
            [
                "sdkmessageprocessingstepid",
                "name",
                "mode",
                "stage",
                "rank",
                "filteringattributes",
                "asyncautodelete",
                "statecode",
                "_sdkmessageid_value",
                "_sdkmessagefilterid_value",
            ],
            f"_eventhandler_value eq {endpoint_id}",
        )
        return {step["name"]: step for step in steps if str(step.get("name", "")).startswith(STEP_PREFIX)}

    def _message_filter(self, table: str, message_id: str) -> str | None:
        rows = self._rows(
            "sdkmessagefilters",
            ["sdkmessagefilterid"],
            f"primaryobjecttypecode eq '{table}' and _sdkmessageid_value eq {message_id}",
        )
        return rows[0]["sdkmessagefilterid"] if rows else None

    def _step_actions(
        self,
        name: str,
        table: str,
        message: str,
        messages: dict[str, str],
        columns: list[str],
        existing: dict[str, dict[str, Any]],
    ) -> list[SetupAction]:
        target = f"step '{name}'"
        message_id = messages.get(message)
        filter_id = self._message_filter(table, message_id) if message_id else None
        if filter_id is None:
            return [SetupAction("warning", target, f"Dynamics cannot run steps on {message} of {table}")]
        filtering = ",".join(columns) if message == "Update" else None
        desired: dict[str, Any] = {
            "name": name,
            "description": "Sends the change to the integration's webhook_d365 function",
            "mode": ASYNCHRONOUS,
            "stage": POST_OPERATION,
            "rank": 1,
            "supporteddeployment": 0,
            "asyncautodelete": True,
            "filteringattributes": filtering,
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
            "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
        }
        detail = f"async post-operation, filtering on {len(columns)} columns" if filtering else "async"
        current = existing.get(name)
        actions = []
        if current is None:

            def create() -> None:
                body = {**desired, "eventhandler_serviceendpoint@odata.bind": self._endpoint_path()}
                self._ids[name] = self.dataverse.create("sdkmessageprocessingsteps", body)

            actions.append(SetupAction("create", target, detail, create))
            step_id = None
        else:
            step_id = current["sdkmessageprocessingstepid"]
            same = (
                current.get("mode") == ASYNCHRONOUS
                and current.get("stage") == POST_OPERATION
                and current.get("statecode") == 0
                and current.get("asyncautodelete") is True
                and _columns(current.get("filteringattributes")) == _columns(filtering)
                and current.get("_sdkmessageid_value") == message_id
                and current.get("_sdkmessagefilterid_value") == filter_id
            )
            if same:
                actions.append(SetupAction("ok", target, detail))
            else:
                enable = {"statecode": 0, "statuscode": 1} if current.get("statecode") != 0 else {}
                actions.append(
                    SetupAction(
                        "update",
                        target,
                        detail,
                        lambda i=step_id: self.dataverse.update(
                            "sdkmessageprocessingsteps", i, {**desired, **enable}
                        ),
                    )
                )
        if message in IMAGE_PROPERTY:
            image_columns = sorted({*columns, *_UNFILTERED})
            actions.append(self._image_action(name, step_id, message, image_columns))
        return actions

    def _endpoint_path(self) -> str:
        return f"/serviceendpoints({self._ids['endpoint']})"

    def _image_action(
        self, step_name: str, step_id: str | None, message: str, columns: list[str]
    ) -> SetupAction:
        desired = {
            "name": IMAGE_NAME,
            "entityalias": IMAGE_NAME,
            "imagetype": POST_IMAGE,
            "messagepropertyname": IMAGE_PROPERTY[message],
            "attributes": ",".join(columns),
        }
        target = f"post image of '{step_name}'"
        detail = f"{len(columns)} columns"
        current = None
        if step_id is not None:
            images = self._rows(
                "sdkmessageprocessingstepimages",
                ["sdkmessageprocessingstepimageid", "entityalias", "imagetype", "attributes"],
                f"_sdkmessageprocessingstepid_value eq {step_id}",
            )
            current = next((i for i in images if i.get("entityalias") == IMAGE_NAME), None)
        if current is None:

            def create() -> None:
                step = step_id or self._ids[step_name]
                body = {
                    **desired,
                    "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step})",
                }
                self.dataverse.create("sdkmessageprocessingstepimages", body)

            return SetupAction("create", target, detail, create)
        if current.get("imagetype") == POST_IMAGE and _columns(current.get("attributes")) == set(columns):
            return SetupAction("ok", target, detail)
        return SetupAction(
            "update",
            target,
            detail,
            lambda: self.dataverse.update(
                "sdkmessageprocessingstepimages", current["sdkmessageprocessingstepimageid"], desired
            ),
        )
