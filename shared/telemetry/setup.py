"""OpenTelemetry to Azure Monitor, configured once per process at start-up (`shared.app.get_app`).

Nothing happens without `APPLICATIONINSIGHTS_CONNECTION_STRING`. With it, the Azure Monitor distro
exports:
- the `shared` loggers' lines as traces, each structured field (`shared.logs.log_event`) a
  customDimension under its own name;
- the outgoing HTTP calls (requests: Dataverse, Campaign, IMS, MSAL, and Storage, whose SDK sends
  through requests) as dependencies, their URLs redacted (`shared.telemetry.redaction`);
- the catalogue's metrics (`shared.telemetry.metrics`) as customMetrics.

Entra-only ingestion: with `APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD;ClientId=<id>`
the exporter authenticates with that user-assigned managed identity itself; locally no credential is
used. The cloud role name is the function app's name (`OTEL_SERVICE_NAME`, else `WEBSITE_SITE_NAME`),
so the workbook can filter on it. In Azure the Python worker must be told that the app streams its own
telemetry (`PYTHON_ENABLE_OPENTELEMETRY=true`), but not configure the distro itself
(`PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY` unset): that second pipeline would have no redaction.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from shared.telemetry.redaction import RedactingLogRecordProcessor, RedactingSpanProcessor

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
DEFAULT_SERVICE_NAME = "acs-d365-sync"
# Only the integration's own loggers: the SDKs' debug chatter (and the exporter's) stays out.
LOGGER_NAME = "shared"

_lock = threading.Lock()
_configured = False


def service_name(environ: Mapping[str, str]) -> str:
    return environ.get("OTEL_SERVICE_NAME") or environ.get("WEBSITE_SITE_NAME") or DEFAULT_SERVICE_NAME


def configure_telemetry(environ: Mapping[str, str] | None = None) -> bool:
    """Install the Azure Monitor pipeline once per process; True if it is (or already was) installed."""
    global _configured
    environ = os.environ if environ is None else environ
    connection_string = environ.get(CONNECTION_STRING)
    if not connection_string:
        return False
    with _lock:
        if _configured:
            return True
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource

        configure_azure_monitor(
            connection_string=connection_string,
            logger_name=LOGGER_NAME,
            resource=Resource.create({SERVICE_NAME: service_name(environ)}),
            # Storage calls are dependencies through requests (the Azure SDK's transport); the SDK's own
            # spans around them would double every Storage dependency.
            instrumentation_options={"azure_sdk": {"enabled": False}},
            span_processors=[RedactingSpanProcessor()],
            log_record_processors=[RedactingLogRecordProcessor()],
        )
        _configured = True
        logging.getLogger(__name__).info("telemetry.configured service=%s", service_name(environ))
        return True


def flush_telemetry(timeout_millis: int = 10_000) -> None:
    """Export what is buffered now (traces, logs, metrics): before a process exits, or in tests."""
    if not _configured:
        return
    from opentelemetry import _logs, metrics, trace

    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush(timeout_millis)
