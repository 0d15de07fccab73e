"""Webhook registration: the `serviceendpoint`s and `sdkmessageprocessingstep`s the service accepts, which
registered steps a change triggers, and how an endpoint's authentication goes on a request."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from urllib.parse import urlencode, urlsplit

from . import errors
from .changes import ChangeEvent
from .store import Store

WEBHOOK_CONTRACT = 8
AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY = 4, 5, 6
MESSAGE_IDS = {  # fixed ids of the sdkmessage rows
    "Create": "9ebdbb1b-ea3e-db11-86a7-000a3a5473e8",
    "Update": "20bebb1b-ea3e-db11-86a7-000a3a5473e8",
    "Delete": "20bdbb1b-ea3e-db11-86a7-000a3a5473e8",
}
# Changes to the plug-in registration itself never trigger steps (not even steps without a table filter).
_REGISTRATION_TABLES = frozenset(
    {
        "serviceendpoint",
        "sdkmessageprocessingstep",
        "sdkmessageprocessingstepimage",
        "sdkmessage",
        "sdkmessagefilter",
        "asyncoperation",
        "systemuser",
    }
)


def auth_settings(xml: str) -> list[tuple[str, str]]:
    """`<settings><setting name="x" value="y" /></settings>` -> [("x", "y")]."""
    root = ElementTree.fromstring(xml)
    if root.tag != "settings":
        raise ValueError("the root element must be <settings>")
    return [(s.attrib["name"], s.attrib.get("value", "")) for s in root.iter("setting")]


def validate_endpoint(row: dict) -> None:
    """Reject webhook registrations the service would reject (missing url or auth value)."""
    if row.get("contract") != WEBHOOK_CONTRACT:
        return
    url, authtype, authvalue = row.get("url"), row.get("authtype"), row.get("authvalue")
    if not url or urlsplit(url).scheme not in ("http", "https"):
        raise errors.bad_request("A webhook service endpoint needs an absolute http(s) url.")
    if authtype not in (AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY):
        raise errors.bad_request(
            "A webhook authtype must be 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString)."
        )
    if not authvalue:
        raise errors.bad_request("The authvalue of a webhook service endpoint is required.")
    if authtype != AUTH_WEBHOOK_KEY:
        try:
            auth_settings(authvalue)
        except (ValueError, KeyError, ElementTree.ParseError):
            raise errors.bad_request(
                'The authvalue must be <settings><setting name="..." value="..." /></settings>.'
            ) from None


def validate_step(row: dict) -> None:
    """The registration rules Dataverse enforces on plug-in steps that matter for webhooks."""
    if row.get("sdkmessageid") is None or row.get("eventhandler") is None:
        raise errors.bad_request(
            "A step needs sdkmessageid@odata.bind and eventhandler_serviceendpoint@odata.bind."
        )
    if row.get("stage") is None:
        raise errors.bad_request("A step needs a stage (10, 20 or 40).")
    if row.get("mode") == 1 and row["stage"] != 40:
        raise errors.bad_request(
            "Asynchronous steps can only be registered in the post-operation stage (40)."
        )


def apply_auth(endpoint: dict, headers: dict[str, str]) -> str:
    """The url to POST to; an HttpHeader endpoint's settings are added to `headers`."""
    url, authtype, authvalue = endpoint["url"], endpoint.get("authtype"), endpoint.get("authvalue") or ""
    separator = "&" if urlsplit(url).query else "?"
    if authtype == AUTH_WEBHOOK_KEY:
        return f"{url}{separator}{urlencode({'code': authvalue})}"
    if authtype == AUTH_HTTP_HEADER:
        headers.update(auth_settings(authvalue))
    elif authtype == AUTH_HTTP_QUERY:
        return f"{url}{separator}{urlencode(auth_settings(authvalue))}"
    return url


def triggered_steps(store: Store, event: ChangeEvent) -> list[tuple[dict, dict, list[dict]]]:
    """(step, webhook endpoint, step images) of every enabled step the event triggers (holding the store's
    lock): its message and table filter match, and an Update changed one of its filtering attributes."""
    if event.table in _REGISTRATION_TABLES:
        return []
    matches = []
    message_id = MESSAGE_IDS[event.message]
    for _, step in store.scan("sdkmessageprocessingstep"):
        if step.get("statecode", 0) != 0 or (step.get("sdkmessageid") or (None, None))[1] != message_id:
            continue
        sdk_filter = step.get("sdkmessagefilterid")
        if sdk_filter is not None:
            filter_row = store.get("sdkmessagefilter", sdk_filter[1])
            if filter_row is None or filter_row.get("primaryobjecttypecode") != event.table:
                continue
        handler = step.get("eventhandler")
        endpoint = store.get("serviceendpoint", handler[1]) if handler else None
        if endpoint is None or endpoint.get("contract") != WEBHOOK_CONTRACT:
            continue
        if event.message == "Update" and step.get("filteringattributes"):
            wanted = {a.strip().lower() for a in step["filteringattributes"].split(",") if a.strip()}
            if not wanted & event.target.keys():
                continue
        step_id = step["sdkmessageprocessingstepid"]
        images = [
            image
            for _, image in store.scan("sdkmessageprocessingstepimage")
            if (image.get("sdkmessageprocessingstepid") or (None, None))[1] == step_id
        ]
        matches.append((step, endpoint, images))
    return matches
