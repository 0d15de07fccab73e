"""The webhook half of `d365 setup`: the `serviceendpoint` Dataverse posts changes to (the `webhook_d365`
URL and its credentials) and, per mapped table and message, the asynchronous post-operation step with the
post image the ingress flow reads. Steps are found again by name, so a second run updates what changed and
duplicates nothing; steps of tables no longer mapped are removed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from shared.d365.client import DataverseClient
from shared.mapping.engine import MappingEngine
from shared.mapping.model import SyncConfig, TableMapping
from shared.setup.action import SetupAction

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


class WebhookRegistration:
    """The actions that register `target` for every enabled mapped table. Make one per plan: the actions
    of a plan share the ids it learns."""

    def __init__(
        self, *, dataverse: DataverseClient, config: SyncConfig, target: WebhookTarget, optout_direction: str
    ) -> None:
        """:param optout_direction: the opt-out direction in force (the app setting's or the config's)."""
        self.dataverse = dataverse
        self.config = config
        self.target = target
        self.optout_direction = optout_direction
        # Ids learned while applying (an endpoint or step created a moment earlier).
        self._ids: dict[str, str] = {}

    def mapped_columns(self, mapping: TableMapping) -> list[str]:
        """The columns whose change matters to the ingress: the step's filtering attributes and image."""
        pairs = (
            self.config.optout.pairs
            if mapping.d365_table == "contact" and self.optout_direction in _OPTOUT_FROM_D365
            else ()
        )
        engine = MappingEngine(mapping, optout_pairs=pairs)
        return sorted(set(engine.source_columns) - _UNFILTERED)

    def plan(self) -> list[SetupAction]:
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

    def _rows(self, entity_set: str, select: list[str], condition: str) -> list[dict[str, Any]]:
        return [
            row
            for page in self.dataverse.iter_pages(entity_set, select=select, filter=condition)
            for row in page.rows
        ]

    def _endpoint_action(self) -> SetupAction:
        authtype, authvalue = self.target.auth()
        description = f"Managed by `shared.cli d365 setup`; credentials {self.target.fingerprint()}"
        desired = {
            "name": ENDPOINT_NAME,
            "contract": WEBHOOK_CONTRACT,
            "url": self.target.url,
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
        shown = f"{self.target.url} ({'WebhookKey' if authtype == AUTH_WEBHOOK_KEY else 'HttpHeader'})"
        if not rows:

            def create() -> None:
                self._ids["endpoint"] = self.dataverse.create("serviceendpoints", desired)

            return SetupAction("create", target, shown, create)
        current = rows[0]
        self._ids["endpoint"] = current["serviceendpointid"]
        compared = ("url", "contract", "authtype", "description")
        if all(current.get(name) == desired[name] for name in compared):
            return SetupAction("ok", target, self.target.url)
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
