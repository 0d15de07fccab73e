"""The Dataverse emulator's own behaviour, checked with raw HTTP calls (the client has its own tests)."""

from __future__ import annotations

import json
import re
import threading
import uuid

import msal
import pytest
import requests
from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer
from emulators.dataverse import DataverseEmulator

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "test-secret"
SEEDED = 230


@pytest.fixture(scope="module")
def emu():
    emulator = DataverseEmulator(client_id=CLIENT_ID, client_secret=SECRET, contacts=SEEDED, seed=7).start()
    emulator.webhook_retry_delay_seconds = 0
    yield emulator
    emulator.stop()


def get_token(
    emulator: DataverseEmulator, secret: str = SECRET, scope: str | None = None
) -> requests.Response:
    return requests.post(
        f"{emulator.authority}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": secret,
            "scope": scope or emulator.scope,
        },
        verify=emulator.ca_bundle,
    )


class Api:
    """requests against one emulator with a bearer token, renewed on 401 like a real client (verify is
    passed per call: REQUESTS_CA_BUNDLE would override a Session's verify)."""

    def __init__(self, emulator: DataverseEmulator) -> None:
        self.emulator = emulator
        self.headers = {"Accept": "application/json", "OData-Version": "4.0", "OData-MaxVersion": "4.0"}
        self.authenticate()

    def authenticate(self) -> None:
        self.headers["Authorization"] = f"Bearer {get_token(self.emulator).json()['access_token']}"

    def __call__(self, method: str, path: str, *, body=None, headers=None, data=None) -> requests.Response:
        url = path if path.startswith("https://") else self.emulator.api_url + path
        for _ in range(2):
            response = requests.request(
                method,
                url,
                json=body,
                data=data,
                headers={**self.headers, **(headers or {})},
                verify=self.emulator.ca_bundle,
            )
            if response.status_code != 401:
                break
            self.authenticate()
        return response

    def created_id(self, response: requests.Response) -> str:
        assert response.status_code == 204, response.text
        return re.search(r"\(([0-9a-f-]{36})\)$", response.headers["OData-EntityId"]).group(1)


@pytest.fixture(scope="module")
def api(emu) -> Api:
    return Api(emu)


def error_code(response: requests.Response) -> str:
    return response.json()["error"]["code"]


# -- identity -------------------------------------------------------------------------------------------


def test_msal_gets_a_token_through_discovery_and_the_api_accepts_it(emu):
    session = requests.Session()
    session.trust_env = False  # so the session's verify is not replaced by REQUESTS_CA_BUNDLE
    session.verify = emu.ca_bundle
    app = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=SECRET,
        authority=emu.authority,
        http_client=session,
        instance_discovery=f"{emu.base_url}/common/discovery/instance",
    )
    result = app.acquire_token_for_client(scopes=[emu.scope])
    assert result["token_type"] == "Bearer" and result["expires_in"] > 0
    response = session.get(
        emu.api_url + "WhoAmI", headers={"Authorization": f"Bearer {result['access_token']}"}
    )
    assert response.status_code == 200
    assert set(response.json()) >= {"UserId", "BusinessUnitId", "OrganizationId"}


def test_token_endpoint_rejects_a_wrong_secret_and_a_wrong_scope(emu):
    wrong_secret = get_token(emu, secret="nope")
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert "AADSTS7000215" in wrong_secret.json()["error_description"]
    wrong_scope = get_token(emu, scope="https://other.example.com/.default")
    assert wrong_scope.status_code == 400 and wrong_scope.json()["error"] == "invalid_scope"


def test_api_without_a_valid_bearer_answers_401_with_a_challenge(emu):
    response = requests.get(
        emu.api_url + "contacts", headers={"Authorization": "Bearer forged"}, verify=emu.ca_bundle
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


# -- queries and paging ---------------------------------------------------------------------------------


def test_paging_follows_next_links_through_every_row(emu, api):
    ids, url, pages = set(), "contacts?$select=fullname,emailaddress1", 0
    while url:
        response = api("GET", url, headers={"Prefer": "odata.maxpagesize=100"})
        assert response.status_code == 200
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=100"
        page = response.json()
        assert "@odata.deltaLink" not in page
        ids.update(row["contactid"] for row in page["value"])
        assert all(row["@odata.etag"].startswith('W/"') for row in page["value"])
        url, pages = page.get("@odata.nextLink"), pages + 1
    assert len(ids) == len(emu.rows("contact")) >= SEEDED
    assert pages == -(-len(ids) // 100)


def test_filter_select_and_formatted_values(api):
    response = api(
        "GET",
        "contacts?$select=fullname,statecode,_parentcustomerid_value&$filter=statecode eq 1",
        headers={"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'},
    )
    rows = response.json()["value"]
    assert rows and all(row["statecode"] == 1 for row in rows)
    assert all(row["statecode@OData.Community.Display.V1.FormattedValue"] == "Inactive" for row in rows)
    assert set(rows[0]) >= {"fullname", "_parentcustomerid_value", "contactid", "@odata.etag"}


def test_bad_queries_are_rejected_with_the_service_errors(api):
    assert api("GET", "contacts?$select=nosuchcolumn").status_code == 400
    assert error_code(api("GET", "contacts?$select=nosuchcolumn")) == "0x80060888"
    assert api("GET", "contacts?$skip=10").status_code == 400
    missing = api("GET", "nosuchthings")
    assert missing.status_code == 404 and error_code(missing) == "0x80060888"


# -- change tracking ------------------------------------------------------------------------------------


def full_sync(api: Api, url: str) -> tuple[list[dict], str]:
    rows = []
    while True:
        page = api("GET", url, headers={"Prefer": "odata.track-changes,odata.maxpagesize=70"}).json()
        rows += page["value"]
        if "@odata.nextLink" in page:
            assert "@odata.deltaLink" not in page
            url = page["@odata.nextLink"]
        else:
            return rows, page["@odata.deltaLink"]


def test_change_tracking_returns_everything_then_changes_and_deletions(emu, api):
    rows, delta_link = full_sync(api, "contacts?$select=firstname,lastname")
    assert len(rows) == len(emu.rows("contact"))
    assert any(row.get("firstname") for row in rows) and "%21" in delta_link

    changed = rows[0]["contactid"]
    emu.update_row("contact", changed, {"firstname": "Renamed"})
    deleted = rows[1]["contactid"]
    emu.delete_row("contact", deleted)
    transient = emu.create_row("contact", {"lastname": "Ephemeral"})
    emu.delete_row("contact", transient)
    created = [emu.create_row("contact", {"lastname": f"New{i}"}) for i in range(3)]

    changes, next_delta = full_sync(api, delta_link)
    upserts = [c for c in changes if "contactid" in c]
    removals = [c for c in changes if c.get("reason") == "deleted"]
    assert changes.index(upserts[-1]) < changes.index(removals[0])  # new/updated first, then deleted
    assert {u["contactid"] for u in upserts} == {changed, *created}
    assert next(u for u in upserts if u["contactid"] == changed)["firstname"] == "Renamed"
    assert {r["id"] for r in removals} == {deleted, transient}
    assert removals[0]["@odata.context"].endswith("$metadata#contacts/$deletedEntity")

    assert api("GET", next_delta).json()["value"] == []


def test_delta_pages_with_maxpagesize_and_expired_tokens_ask_for_a_full_sync(emu, api):
    _, delta_link = full_sync(api, "contacts?$select=lastname")
    created = {emu.create_row("contact", {"lastname": f"Paged{i}"}) for i in range(5)}
    first = api("GET", delta_link, headers={"Prefer": "odata.track-changes,odata.maxpagesize=2"}).json()
    assert len(first["value"]) == 2 and "@odata.nextLink" in first and "@odata.deltaLink" not in first
    seen, _ = full_sync(api, first["@odata.nextLink"])
    assert {row["contactid"] for row in first["value"] + seen} == created

    stale_token = dict(api.headers)
    emu.advance_time(8 * 86400)  # the organization's clock also expires bearer tokens
    assert requests.get(delta_link, headers=stale_token, verify=emu.ca_bundle).status_code == 401
    expired = api("GET", delta_link)
    assert expired.status_code == 400 and error_code(expired) == "0x80044352"
    assert "full sync" in expired.json()["error"]["message"]


def test_track_changes_rejects_filter_and_tables_without_tracking(api):
    response = api("GET", "contacts?$filter=statecode eq 0", headers={"Prefer": "odata.track-changes"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        'The "$filter" query parameter isn\'t supported when Change Tracking is enabled.'
    )
    assert api("GET", "tasks", headers={"Prefer": "odata.track-changes"}).status_code == 400


# -- writes ---------------------------------------------------------------------------------------------


def test_writes_follow_create_upsert_precondition_and_delete_rules(emu, api):
    contact = emu.rows("contact")[0]["contactid"]
    vehicle = {
        "cr123_name": "Family car",
        "cr123_model": 100000002,
        "cr123_price": 25000.5,
        "cr123_Contact@odata.bind": f"/contacts({contact})",
    }
    first = api.created_id(api("POST", "cr123_vehicles", body={**vehicle, "cr123_vin": "VIN-W-0001"}))
    represented = api(
        "POST",
        "cr123_vehicles",
        body={**vehicle, "cr123_vin": "VIN-W-0002"},
        headers={"Prefer": "return=representation"},
    )
    assert represented.status_code == 201 and represented.json()["_cr123_contact_value"] == contact

    duplicate_key = api("POST", "cr123_vehicles", body={**vehicle, "cr123_vin": "vin-w-0001"})
    assert duplicate_key.status_code == 412 and error_code(duplicate_key) == "0x80040237"

    assert (
        api(
            "PATCH", f"cr123_vehicles({uuid.uuid4()})", body={"cr123_name": "x"}, headers={"If-Match": "*"}
        ).status_code
        == 404
    )
    assert (
        api(
            "PATCH", f"cr123_vehicles({first})", body={"cr123_name": "x"}, headers={"If-None-Match": "*"}
        ).status_code
        == 412
    )
    assert (
        api(
            "PATCH", f"cr123_vehicles({first})", body={"cr123_name": "x"}, headers={"If-Match": 'W/"1"'}
        ).status_code
        == 412
    )
    current = api("GET", f"cr123_vehicles({first})?$select=cr123_name").json()["@odata.etag"]
    assert (
        api(
            "PATCH", f"cr123_vehicles({first})", body={"cr123_name": "Updated"}, headers={"If-Match": current}
        ).status_code
        == 204
    )

    upserted = api("PATCH", "cr123_vehicles(cr123_vin='VIN-W-0003')", body={"cr123_name": "By key"})
    assert upserted.status_code == 204
    by_key = api("GET", "cr123_vehicles(cr123_vin='VIN-W-0003')?$select=cr123_name,cr123_vin").json()
    assert by_key["cr123_name"] == "By key" and by_key["cr123_vin"] == "VIN-W-0003"
    new_id = str(uuid.uuid4())
    assert api("PATCH", f"cr123_vehicles({new_id})", body={"cr123_name": "Upsert"}).status_code == 204
    assert api("GET", f"cr123_vehicles({new_id})").status_code == 200

    assert api("DELETE", f"cr123_vehicles({first})").status_code == 204
    assert api("DELETE", f"cr123_vehicles({first})").status_code == 404


def test_written_values_are_validated_per_column_type(api):
    bad_choice = api("POST", "contacts", body={"lastname": "X", "gendercode": 9})
    assert bad_choice.status_code == 400 and error_code(bad_choice) == "0x8004431a"
    too_long = api("POST", "contacts", body={"lastname": "X" * 51})
    assert too_long.status_code == 400 and error_code(too_long) == "0x80044331"
    wrong_type = api("POST", "contacts", body={"donotemail": "yes"})
    assert wrong_type.status_code == 400 and error_code(wrong_type) == "0x80048d19"
    unknown = api("POST", "contacts", body={"shoe_size": 44})
    assert unknown.status_code == 400 and error_code(unknown) == "0x80060888"


# -- $batch ---------------------------------------------------------------------------------------------


def http_part(method: str, path: str, body: dict | None = None, content_id: str | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    request = f"{method} /api/data/v9.2/{path} HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
    return head + "\r\n" + request + (json.dumps(body) if body is not None else "") + "\r\n"


def batch_body(parts: list[str], boundary: str = "batch_test") -> str:
    return "".join(f"--{boundary}\r\n{part}" for part in parts) + f"--{boundary}--\r\n"


def statuses(response: requests.Response) -> list[int]:
    assert re.match(r"multipart/mixed; boundary=batchresponse_", response.headers["Content-Type"])
    return [int(s) for s in re.findall(r"^HTTP/1\.1 (\d{3})", response.text, re.MULTILINE)]


def test_batch_continues_on_error_only_when_asked(api):
    parts = [
        http_part("POST", "contacts", {"lastname": "Batch1"}),
        http_part("POST", "contacts", {"lastname": "Bad", "gendercode": 77}),
        http_part("GET", "contacts?$select=fullname&$top=1"),
    ]
    headers = {"Content-Type": "multipart/mixed; boundary=batch_test"}
    stopped = api("POST", "$batch", data=batch_body(parts), headers=headers)
    assert stopped.status_code == 400 and statuses(stopped) == [204, 400]
    continued = api(
        "POST", "$batch", data=batch_body(parts), headers={**headers, "Prefer": "odata.continue-on-error"}
    )
    assert continued.status_code == 200 and statuses(continued) == [204, 400, 200]
    assert "0x8004431a" in continued.text and "OData-EntityId: " in continued.text


def test_batch_change_sets_are_atomic_and_resolve_content_ids(emu, api):
    changeset = "changeset_one"
    good = f"Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n" + batch_body(
        [
            http_part("POST", "accounts", {"name": "Batch Co"}, "1"),
            http_part(
                "POST", "contacts", {"lastname": "Linked", "parentcustomerid_account@odata.bind": "$1"}, "2"
            ),
        ],
        changeset,
    )
    response = api(
        "POST",
        "$batch",
        data=batch_body([good]),
        headers={"Content-Type": "multipart/mixed; boundary=batch_test"},
    )
    assert response.status_code == 200 and statuses(response) == [204, 204]
    assert "changesetresponse_" in response.text
    contact_id = re.findall(r"contacts\(([0-9a-f-]{36})\)", response.text)[0]
    assert emu.get_row("contact", contact_id)["parentcustomerid"] is not None

    before = len(emu.rows("account"))
    failing = f"Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n" + batch_body(
        [
            http_part("POST", "accounts", {"name": "Rolled back"}, "1"),
            http_part("POST", "contacts", {"gendercode": 99}, "2"),
        ],
        changeset,
    )
    response = api(
        "POST",
        "$batch",
        data=batch_body([failing]),
        headers={"Content-Type": "multipart/mixed; boundary=batch_test"},
    )
    assert statuses(response) == [400]
    assert len(emu.rows("account")) == before


# -- service protection ---------------------------------------------------------------------------------


def test_request_limit_answers_429_with_retry_after():
    with DataverseEmulator(client_id=CLIENT_ID, client_secret=SECRET, max_requests=3) as limited:
        client = Api(limited)
        assert [client("GET", "WhoAmI").status_code for _ in range(3)] == [200, 200, 200]
        throttled = client("GET", "WhoAmI")
        assert throttled.status_code == 429
        assert int(throttled.headers["Retry-After"]) >= 1
        assert error_code(throttled) == "0x80072322"
        assert "over time window of 300 seconds" in throttled.json()["error"]["message"]
        assert limited.limit.rejected["requests"] == 1


# -- metadata -------------------------------------------------------------------------------------------


def label(text: str) -> dict:
    return {"LocalizedLabels": [{"Label": text, "LanguageCode": 1033}]}


def test_metadata_creates_an_activity_table_with_columns_keys_and_regarding(emu, api):
    table = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": "new_EmailOpen",
        "DisplayName": label("Email open"),
        "DisplayCollectionName": label("Email opens"),
        "OwnershipType": "UserOwned",
        "IsActivity": True,
        "HasActivities": False,
        "HasNotes": False,
        "Attributes": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                "SchemaName": "Subject",
                "IsPrimaryName": True,
                "MaxLength": 400,
                "DisplayName": label("Subject"),
            }
        ],
    }
    assert api("POST", "EntityDefinitions", body=table).status_code == 204
    definition = api(
        "GET",
        "EntityDefinitions(LogicalName='new_emailopen')"
        "?$select=EntitySetName,PrimaryIdAttribute,IsActivity,ChangeTrackingEnabled",
    ).json()
    assert (
        definition["EntitySetName"] == "new_emailopens" and definition["PrimaryIdAttribute"] == "activityid"
    )
    assert (
        api(
            "PUT",
            "EntityDefinitions(LogicalName='new_emailopen')",
            body={**definition, "ChangeTrackingEnabled": True},
        ).status_code
        == 204
    )
    assert (
        api(
            "PUT", "EntityDefinitions(LogicalName='new_emailopen')", body={"ChangeTrackingEnabled": False}
        ).status_code
        == 400
    )

    column = {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "SchemaName": "new_Campaign",
        "MaxLength": 100,
        "DisplayName": label("Campaign"),
    }
    assert (
        api("POST", "EntityDefinitions(LogicalName='new_emailopen')/Attributes", body=column).status_code
        == 204
    )
    key = {
        "SchemaName": "new_campaign_key",
        "KeyAttributes": ["new_campaign"],
        "DisplayName": label("Campaign"),
    }
    assert api("POST", "EntityDefinitions(LogicalName='new_emailopen')/Keys", body=key).status_code == 204
    keys = api(
        "GET", "EntityDefinitions(LogicalName='new_emailopen')?$select=LogicalName&$expand=Keys"
    ).json()
    assert keys["Keys"][0]["KeyAttributes"] == ["new_campaign"]
    assert keys["Keys"][0]["EntityKeyIndexStatus"] == "Active"

    relationships = api(
        "GET",
        "EntityDefinitions(LogicalName='new_emailopen')?$select=LogicalName"
        "&$expand=ManyToOneRelationships($select=ReferencingEntityNavigationPropertyName,"
        "ReferencedEntity;$filter=ReferencedEntity eq 'contact')",
    ).json()
    navigation = relationships["ManyToOneRelationships"][0]["ReferencingEntityNavigationPropertyName"]
    assert navigation == "regardingobjectid_contact_new_emailopen"

    contact = emu.rows("contact")[0]["contactid"]
    created = api(
        "POST",
        "new_emailopens",
        body={
            "subject": "Opened",
            "new_campaign": "Spring",
            f"{navigation}@odata.bind": f"/contacts({contact})",
        },
    )
    activity = api("GET", f"new_emailopens({api.created_id(created)})").json()
    assert activity["_regardingobjectid_value"] == contact and activity["activitytypecode"] == "new_emailopen"
    assert api("GET", "new_emailopens(new_campaign='Spring')").status_code == 200


def test_metadata_lists_choice_options(api):
    response = api(
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='gendercode')/"
        "Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet",
    )
    options = response.json()["OptionSet"]["Options"]
    assert [(o["Value"], o["Label"]["UserLocalizedLabel"]["Label"]) for o in options] == [
        (1, "Male"),
        (2, "Female"),
    ]
    status = api(
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='statuscode')/"
        "Microsoft.Dynamics.CRM.StatusAttributeMetadata?$expand=OptionSet",
    ).json()
    assert {o["Value"]: o["State"] for o in status["OptionSet"]["Options"]} == {1: 0, 2: 1}


# -- webhooks -------------------------------------------------------------------------------------------


class Receiver:
    """A tiny webhook endpoint that records requests and answers with scripted statuses (default 200)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.server = EmulatorServer(self.app).start()

    @Request.application
    def app(self, request: Request) -> Response:
        self.requests.append(
            {
                "args": request.args.to_dict(),
                "headers": dict(request.headers),
                "raw": request.get_data(as_text=True),
            }
        )
        self.release.wait(10)
        return Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
def receiver():
    hook = Receiver()
    yield hook
    hook.server.stop()


@pytest.fixture
def register(api):
    """Registers a webhook step (and its endpoint) through the Web API; unregisters it afterwards."""
    steps = []

    def register_step(
        url: str,
        *,
        message: str,
        table: str = "contact",
        mode: int = 1,
        filtering: str = "",
        images: list[dict] = (),
        endpoint: dict | None = None,
    ) -> str:
        endpoint_id = api.created_id(
            api(
                "POST",
                "serviceendpoints",
                body=endpoint
                or {"name": "test hook", "contract": 8, "url": url, "authtype": 4, "authvalue": "s3cret"},
            )
        )
        message_id = api("GET", f"sdkmessages?$filter=name eq '{message}'&$select=sdkmessageid").json()[
            "value"
        ][0]["sdkmessageid"]
        filter_id = api(
            "GET",
            f"sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq "
            f"'{table}' and _sdkmessageid_value eq {message_id}",
        ).json()["value"][0]["sdkmessagefilterid"]
        step_id = api.created_id(
            api(
                "POST",
                "sdkmessageprocessingsteps",
                body={
                    "name": f"test: {message} of {table}",
                    "mode": mode,
                    "stage": 40,
                    "rank": 1,
                    "filteringattributes": filtering,
                    "supporteddeployment": 0,
                    "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
                    "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
                    "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
                },
            )
        )
        for image in images:
            api.created_id(
                api(
                    "POST",
                    "sdkmessageprocessingstepimages",
                    body={
                        **image,
                        "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step_id})",
                    },
                )
            )
        steps.append(step_id)
        return step_id

    yield register_step
    for step_id in steps:
        api("DELETE", f"sdkmessageprocessingsteps({step_id})")


def receiver_url(hook: Receiver) -> str:
    return hook.server.base_url + "/api/dataverse"


def test_update_webhook_delivers_the_remote_execution_context_with_the_key(emu, receiver, register):
    image = {
        "name": "post",
        "entityalias": "post",
        "imagetype": 1,
        "messagepropertyname": "Target",
        "attributes": "fullname,emailaddress1",
    }
    register(receiver_url(receiver), message="Update", filtering="firstname,lastname", images=[image])
    contact = emu.rows("contact")[0]
    emu.update_row("contact", contact["contactid"], {"telephone1": "+44 20 7946 0000"})  # not filtered
    emu.update_row("contact", contact["contactid"], {"firstname": "Webhooked"})
    assert emu.wait_for_deliveries(timeout=10)

    assert len(receiver.requests) == 1
    delivered = receiver.requests[0]
    assert delivered["args"] == {"code": "s3cret"}
    assert delivered["headers"]["X-Ms-Dynamics-Request-Name"] == "Update"
    assert delivered["headers"]["X-Ms-Dynamics-Entity-Name"] == "contact"
    assert "http:\\/\\/schemas.microsoft.com" in delivered["raw"]  # WCF escapes solidi
    context = json.loads(delivered["raw"])
    assert context["MessageName"] == "Update" and context["Stage"] == 40 and context["Mode"] == 1
    assert context["PrimaryEntityId"] == contact["contactid"]
    assert context["CorrelationId"] == delivered["headers"]["X-Ms-Correlation-Request-Id"]
    target = context["InputParameters"][0]["value"]
    assert target["__type"] == "Entity:http://schemas.microsoft.com/xrm/2011/Contracts"
    attributes = {pair["key"]: pair["value"] for pair in target["Attributes"]}
    assert attributes["firstname"] == "Webhooked"
    assert re.fullmatch(r"/Date\(\d+\)/", attributes["modifiedon"])
    assert attributes["modifiedby"]["__type"].startswith("EntityReference:")
    assert "telephone1" not in attributes
    post = {pair["key"]: pair["value"] for pair in context["PostEntityImages"][0]["value"]["Attributes"]}
    assert context["PostEntityImages"][0]["key"] == "post" and post["fullname"].startswith("Webhooked")


def test_async_webhook_is_retried_once_on_503_then_recorded_as_a_failed_system_job(
    emu, api, receiver, register
):
    receiver.statuses = [503, 503]
    step_id = register(receiver_url(receiver), message="Create", table="account")
    account_id = emu.create_row("account", {"name": "Failing Hook Ltd"})
    assert emu.wait_for_deliveries(timeout=10)
    assert len(receiver.requests) == 2
    jobs = api(
        "GET", f"asyncoperations?$filter=statuscode eq 31 and _owningextensionid_value eq {step_id}"
    ).json()["value"]
    assert len(jobs) == 1
    assert jobs[0]["_regardingobjectid_value"] == account_id and "503" in jobs[0]["message"]
    assert jobs[0]["statecode"] == 3 and jobs[0]["operationtype"] == 1


def test_webhook_not_retried_on_other_errors_and_oversized_payloads_are_trimmed(emu, receiver, register):
    emu.define_table("new_note", primary_name="new_name", attributes={"new_body": ("Memo", 1048576)})
    receiver.statuses = [500]
    register(receiver_url(receiver), message="Create", table="new_note")
    emu.create_row("new_note", {"new_name": "small"})
    emu.create_row("new_note", {"new_name": "big", "new_body": "x" * 300_000})
    assert emu.wait_for_deliveries(timeout=10)
    assert len(receiver.requests) == 2  # the 500 was not retried
    big = next(
        r for r in receiver.requests if "x-ms-dynamics-msg-size-exceeded" in {k.lower() for k in r["headers"]}
    )
    context = json.loads(big["raw"])
    assert "InputParameters" not in context and "PostEntityImages" not in context
    assert context["PrimaryEntityName"] == "new_note" and context["OutputParameters"][0]["key"] == "id"


def test_header_auth_and_duplicates_are_applied_when_configured(emu, receiver, register):
    endpoint = {
        "name": "header hook",
        "contract": 8,
        "url": receiver_url(receiver),
        "authtype": 5,
        "authvalue": '<settings><setting name="x-api-key" value="k1" /></settings>',
    }
    register(receiver_url(receiver), message="Delete", endpoint=endpoint)
    emu.webhook_duplicate_rate = 1.0
    try:
        emu.delete_row("contact", emu.create_row("contact", {"lastname": "Doomed"}))
        assert emu.wait_for_deliveries(timeout=10)
    finally:
        emu.webhook_duplicate_rate = 0.0
    assert len(receiver.requests) == 2
    assert all(r["headers"]["X-Api-Key"] == "k1" and r["args"] == {} for r in receiver.requests)
    target = json.loads(receiver.requests[0]["raw"])["InputParameters"][0]["value"]
    assert target["__type"].startswith("EntityReference:") and target["LogicalName"] == "contact"


def test_a_failing_synchronous_step_fails_the_write_and_undoes_it(emu, api, receiver, register):
    receiver.statuses = [400]
    register(receiver_url(receiver), message="Create", table="account", mode=0)
    before = len(emu.rows("account"))
    response = api("POST", "accounts", body={"name": "Rejected by hook"})
    assert response.status_code == 400 and error_code(response) == "0x80040265"
    assert len(emu.rows("account")) == before


def test_concurrency_limit_rejects_a_request_while_another_is_in_flight(receiver):
    with DataverseEmulator(client_id=CLIENT_ID, client_secret=SECRET, max_concurrency=1) as limited:
        client = Api(limited)
        endpoint = client.created_id(
            client(
                "POST",
                "serviceendpoints",
                body={
                    "name": "slow",
                    "contract": 8,
                    "url": receiver_url(receiver),
                    "authtype": 4,
                    "authvalue": "k",
                },
            )
        )
        message = client("GET", "sdkmessages?$filter=name eq 'Create'").json()["value"][0]["sdkmessageid"]
        client.created_id(
            client(
                "POST",
                "sdkmessageprocessingsteps",
                body={
                    "name": "slow sync",
                    "mode": 0,
                    "stage": 40,
                    "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint})",
                    "sdkmessageid@odata.bind": f"/sdkmessages({message})",
                },
            )
        )
        receiver.release.clear()
        slow = threading.Thread(target=client, args=("POST", "accounts"), kwargs={"body": {"name": "Slow"}})
        slow.start()
        while not receiver.requests:
            threading.Event().wait(0.01)
        rejected = client("GET", "WhoAmI")
        receiver.release.set()
        slow.join()
        assert rejected.status_code == 429 and error_code(rejected) == "0x80072326"
        assert int(rejected.headers["Retry-After"]) >= 1


def test_admin_surface_drives_the_emulator_without_auth(emu):
    created = requests.post(
        emu.base_url + "/_emulator/rows/contact", json={"lastname": "Admin"}, verify=emu.ca_bundle
    )
    assert created.status_code == 201
    row_id = created.json()["id"]
    assert (
        requests.patch(
            f"{emu.base_url}/_emulator/rows/contact/{row_id}", json={"firstname": "Ada"}, verify=emu.ca_bundle
        ).status_code
        == 204
    )
    assert emu.get_row("contact", row_id)["fullname"] == "Ada Admin"
    stats = requests.get(emu.base_url + "/_emulator/stats", verify=emu.ca_bundle).json()
    assert stats["request_count"] == emu.request_count > 0
    assert stats["webhooks"]["pending"] == 0
