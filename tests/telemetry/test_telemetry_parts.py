"""The telemetry pieces on their own: redaction of URLs and log lines, the catalogue's dimension check,
the structured fields of a log line, and the set-up that does nothing without a connection string."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.logs import dimensions
from shared.telemetry import metrics
from shared.telemetry.catalog import API_CALLS, RECORDS
from shared.telemetry.redaction import RedactingSpanProcessor, redact
from shared.telemetry.setup import configure_telemetry, service_name


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://app/api/webhook_d365?code=abc123==&x=1", "https://app/api/webhook_d365?code=REDACTED&x=1"),
        ("https://acct.blob/c/b?sv=2024&sig=AbC%2Bd&se=1", "https://acct.blob/c/b?sv=2024&sig=REDACTED&se=1"),
        ("POST /token client_secret=s3cr3t&client_id=x", "POST /token client_secret=REDACTED&client_id=x"),
        ("https://h/cb#access_token=eyJabc&state=1", "https://h/cb#access_token=REDACTED&state=1"),
        ("https://user:pa55@host/path", "https://REDACTED@host/path"),
        ("Authorization: Bearer eyJ0eXAi.abc-def_ghi", "Authorization: Bearer REDACTED"),
    ],
)
def test_credentials_in_urls_and_text_are_redacted(url, expected):
    assert redact(url) == expected


def test_a_dataverse_delta_token_and_other_parameters_stay_readable():
    url = "https://org/api/data/v9.2/contacts?$deltatoken=919042!08/22/2026&$select=firstname&barcode=7"
    assert redact(url) == url


def test_an_outgoing_call_span_is_exported_with_its_url_redacted_and_no_credential_header():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(RedactingSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    attributes = {
        "url.full": "https://host/api/x?code=functionkey&y=2",
        "http.request.header.authorization": ("Bearer eyJsecret",),
        "http.request.method": "GET",
    }
    with tracer.start_as_current_span("GET", attributes=attributes):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.attributes["url.full"] == "https://host/api/x?code=REDACTED&y=2"
    assert span.attributes["http.request.header.authorization"] == "REDACTED"
    assert span.attributes["http.request.method"] == "GET"


def test_a_metric_with_other_dimensions_than_the_catalogue_is_refused():
    with pytest.raises(metrics.DimensionError, match="outcome"):
        metrics.count(RECORDS, 1, flow="contacts_sync", mapping="contacts")
    with pytest.raises(metrics.DimensionError, match="tenant"):
        metrics.count(API_CALLS, 1, service="campaign", status=200, tenant="acme")
    metrics.count(API_CALLS, 1, service="campaign", status=200)  # without a provider: a no-op


def test_log_fields_become_plain_attributes_and_names_logging_owns_are_renamed():
    fields = {"mapping": "contacts", "created": 5, "name": "x", "none": None, "ids": ["a", "b"]}
    attributes = dimensions("ingress.run", fields)
    assert attributes == {
        "event": "ingress.run",
        "mapping": "contacts",
        "created_": 5,
        "name_": "x",
        "ids": "['a', 'b']",
    }
    logging.getLogger("shared.test").info("line", extra=attributes)  # no LogRecord attribute clashes


def test_without_a_connection_string_nothing_is_configured():
    assert configure_telemetry({}) is False
    assert configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": ""}) is False


def test_the_cloud_role_is_the_function_apps_name():
    assert service_name({"WEBSITE_SITE_NAME": "func-acsd365-x"}) == "func-acsd365-x"
    assert service_name({"OTEL_SERVICE_NAME": "mine", "WEBSITE_SITE_NAME": "func"}) == "mine"
    assert service_name({}) == "acs-d365-sync"
