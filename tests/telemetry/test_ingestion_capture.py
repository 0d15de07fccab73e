"""What reaches Application Insights from a real sync run through the local functions host: the host's
connection string points the Azure Monitor exporter at a local ingestion endpoint that keeps every
envelope (emulators/appinsights.py). Traces must carry the documented customDimensions, the catalogue's
metrics must arrive with their dimensions, the calls to Dataverse, Campaign, IMS and Storage must be
dependencies, and no secret or token may appear in any byte sent."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from emulators.appinsights import IngestionCapture
from emulators.processes import HostProcess
from emulators.stack import ACS_SECRET, D365_SECRET, Stack
from shared.app import App
from shared.settings import load_settings
from shared.setup.d365 import D365Setup
from shared.setup.webhook import WebhookTarget
from shared.telemetry.catalog import API_CALLS, LAG, LOG_FIELDS, RECORDS, RUNS, WEBHOOK_ANSWERS

pytestmark = pytest.mark.slow

CONFIG = {
    "tables": [
        {
            "name": "contacts",
            "d365_table": "contact",
            "acs_resource": "profileAndServicesExt/profile",
            "fields": [{"d365": "firstname", "acs": "firstName"}, {"d365": "lastname", "acs": "lastName"}],
        }
    ],
    "optout": {"direction": "disabled"},
}
WEBHOOK_SECRET = "webhook-shared-secret-" + uuid.uuid4().hex


@pytest.fixture
def capture():
    with IngestionCapture() as running:
        yield running


@pytest.fixture
def stack(azurite):
    with Stack(azurite=azurite) as running:
        yield running


@pytest.fixture
def settings(stack, capture) -> dict[str, str]:
    return stack.app_settings(
        sync_config=CONFIG,
        WEBHOOK_SHARED_SECRET=WEBHOOK_SECRET,
        LOG_LEVEL="DEBUG",
        APPLICATIONINSIGHTS_CONNECTION_STRING=capture.connection_string,
        # Standard OpenTelemetry / exporter settings: every span kept, metrics every second, no
        # statsbeat to Microsoft's endpoint from a test.
        OTEL_SERVICE_NAME="acsd365-capture-test",
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",
    )


def wait_for(condition, timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def properties(envelope: dict) -> dict:
    return envelope["data"]["baseData"].get("properties", {})


def metric_points(capture: IngestionCapture, name: str) -> list[dict]:
    """(dimensions, value) of every exported point of one metric."""
    return [
        {**properties(e), "value": m["value"]}
        for e in capture.of_type("MetricData")
        for m in e["data"]["baseData"]["metrics"]
        if m["name"] == name
    ]


def issued_tokens(stack: Stack) -> list[str]:
    """The bearer tokens the emulators handed out to the app (the IMS and Entra stand-ins)."""
    campaign = list(getattr(stack.campaign.tokens, "_expiry", {}))
    dataverse = list(getattr(stack.dataverse.identity, "_tokens", {}))
    return campaign + dataverse


def run_the_integration(stack, settings, capture, tmp_path) -> dict[str, str]:
    """A contacts_sync run and webhooks (Dataverse's own deliveries and a bad one) through the local host,
    which is then stopped (it flushes its telemetry); answers the secrets the run used."""
    app = App(load_settings(settings))  # this process's own: d365 setup, the checks (no telemetry)
    ids = stack.dataverse.seed_contacts(5, seed=15)
    with HostProcess(settings, tmp_path, name="telemetry") as host:
        host.trigger("contacts_sync")
        wait_for(lambda: len(stack.campaign.snapshot("profile")) == 5, what="the initial load")
        wait_for(lambda: app.store.reports.latest("contacts_sync") is not None, what="the run report")
        webhook = WebhookTarget(
            url=f"{host.base_url}/api/webhook_d365",
            function_key=host.function_key,
            shared_secret=WEBHOOK_SECRET,
            secret_header=app.settings.webhook_secret_header,
        )
        D365Setup(dataverse=app.dataverse, config=app.config, webhook=webhook).run()  # as `d365 setup` does
        for contact_id in ids[:2]:
            stack.dataverse.update_row("contact", contact_id, {"firstname": "Changed"})
        assert stack.dataverse.wait_for_deliveries(timeout=30)
        bad = requests.post(
            host.webhook_url,
            data=b'{"not": "a context"}',
            headers={"content-type": "application/json", "x-acsd365-secret": WEBHOOK_SECRET},
            timeout=10,
        )
        assert bad.status_code == 400
        status = requests.get(
            f"{host.base_url}/api/status", headers={"x-functions-key": host.keys["masterKey"]}, timeout=30
        )
        assert status.status_code == 200, status.text  # computing the status measures the lag
        secrets = {
            "function key": host.function_key,
            "master key": host.keys["masterKey"],
            "Dataverse client secret": D365_SECRET,
            "Campaign client secret": ACS_SECRET,
            "webhook shared secret": WEBHOOK_SECRET,
        }
    wait_for(lambda: metric_points(capture, RUNS.name), what="the metrics flushed at the host's exit")
    return secrets


def test_a_sync_run_through_the_host_reaches_application_insights_with_its_dimensions_and_no_secret(
    stack, settings, capture, tmp_path
):
    secrets = run_the_integration(stack, settings, capture, tmp_path)

    # Traces: the structured fields as customDimensions under their plain names.
    messages = [properties(e) for e in capture.of_type("MessageData")]
    assert messages, "no log line arrived"
    seen_fields = {key for m in messages for key in m}
    assert set(LOG_FIELDS) <= seen_fields, set(LOG_FIELDS) - seen_fields
    answers = [m for m in messages if m.get("event") == "webhook.answer"]
    assert {m["status"] for m in answers} == {"200", "400"}
    delivered = [m for m in answers if m["status"] == "200"]
    assert len({m["correlation_id"] for m in delivered}) == 2  # each delivery's own, as Dataverse sent it
    writes = [m for m in messages if m.get("event") == "ingress.record" and m.get("outcome") == "updated"]
    assert {m["correlation_id"] for m in writes} == {m["correlation_id"] for m in delivered}
    assert all(m["mapping"] == "contacts" for m in writes)
    runs = [m for m in messages if m.get("event") == "ingress.run"]
    assert [(m["flow"], m["outcome"]) for m in runs] == [("contacts_sync", "succeeded")]

    # Metrics: the catalogue's names with exactly the catalogue's dimensions.
    records = metric_points(capture, RECORDS.name)
    assert {(p["flow"], p["mapping"], p["outcome"]) for p in records} >= {
        ("contacts_sync", "contacts", "created"),
        ("webhook_d365", "contacts", "updated"),
    }
    created = sum(p["value"] for p in records if p["flow"] == "contacts_sync" and p["outcome"] == "created")
    assert created == 5
    calls = metric_points(capture, API_CALLS.name)
    assert {p["service"] for p in calls} >= {"dataverse", "campaign", "ims"}
    assert {p["status"] for p in calls} >= {"200"}
    assert {p["status"] for p in metric_points(capture, WEBHOOK_ANSWERS.name)} >= {"200", "400"}
    assert ("contacts_sync", "succeeded") in {
        (p["flow"], p["outcome"]) for p in metric_points(capture, RUNS.name)
    }
    lags = {(p["flow"], p["mapping"]) for p in metric_points(capture, LAG.name)}
    assert lags == {("contacts_sync", "contacts"), ("events_push", "")}
    for spec in (RECORDS, API_CALLS, WEBHOOK_ANSWERS, RUNS, LAG):
        for point in metric_points(capture, spec.name):
            assert set(point) - {"value"} == set(spec.dimensions), (spec.name, point)

    # Dependencies: every outgoing call, to each service.
    targets = [e["data"]["baseData"].get("data", "") for e in capture.of_type("RemoteDependencyData")]
    services = {
        "Dataverse": stack.dataverse.api_url,
        "Campaign": stack.campaign.campaign_url,
        "IMS": stack.campaign.ims_token_url,
        "Storage (tables)": f"127.0.0.1:{stack.azurite.ports['table']}",
        "Storage (blobs)": f"127.0.0.1:{stack.azurite.ports['blob']}",
    }
    for service, address in services.items():
        assert any(address in target for target in targets), f"no dependency on {service} ({address})"

    # Secrets: none in any byte the exporter sent.
    sent = b"\n".join(capture.raw)
    leaked = [name for name, value in secrets.items() if value.encode() in sent]
    leaked += [f"bearer token {t[:6]}…" for t in issued_tokens(stack) if t.encode() in sent]
    assert issued_tokens(stack), "the emulators issued no token: the check would prove nothing"
    assert leaked == []
