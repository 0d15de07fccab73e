"""The demo's local stack: Azurite, the Dataverse and Campaign emulators and the local functions host,
started with the demo's settings (webhooks delivered as Dataverse does, fast timers, the shipped mapping plus
the emulator's vehicles) and stopped again."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from emulators.azurite import Azurite
from emulators.demo_console import Console
from emulators.processes import HostProcess
from emulators.stack import VEHICLE_MAPPING, Stack
from shared.telemetry.setup import CONNECTION_STRING as TELEMETRY_SETTING

ROOT = Path(__file__).resolve().parents[1]
# Dataverse's asynchronous service delivers webhook jobs in parallel, out of order and now and then twice.
LIKE_DATAVERSE = {"webhook_workers": 8, "webhook_max_delay_seconds": 0.2, "webhook_duplicate_rate": 0.05}
ACTIVITY_TABLES = {
    "send": "acs_emailsend",
    "open": "acs_emailopen",
    "click": "acs_emailclick",
    "bounce": "acs_emailbounce",
}


def demo_sync_config() -> dict[str, Any]:
    """The shipped contact mapping plus the emulator's custom table (vehicles), two-way opt-out."""
    config = json.loads((ROOT / "sync_config.json").read_text())
    config["tables"].append(VEHICLE_MAPPING)
    config["events"]["activity_tables"] = ACTIVITY_TABLES
    return config


class LocalStack:
    """Everything the demo starts on this machine; `stop` stops whatever of it did start."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.host: HostProcess | None = None
        self.azurite: Azurite | None = None
        self.stack: Stack | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="acsd365-demo-")

    def start(self) -> None:
        c = self.console
        c.step("Starting Azurite, the Dataverse and Campaign emulators")
        self.azurite = Azurite().start()
        self.stack = Stack(azurite=self.azurite, dataverse_options=LIKE_DATAVERSE).start()
        c.info(f"Dataverse  {self.stack.dataverse.api_url}")
        c.info(f"Campaign   {self.stack.campaign.campaign_url}")
        c.info(f"Azurite    table port {self.azurite.ports['table']}, blob port {self.azurite.ports['blob']}")
        self.settings = self.stack.app_settings(
            sync_config=demo_sync_config(),
            CONTACTS_SYNC_SCHEDULE="*/15 * * * * *",
            EVENTS_PUSH_SCHEDULE="*/5 * * * * *",
            OPTOUT_SYNC_SCHEDULE="*/5 * * * * *",
            VERIFY_SCHEDULE="0 30 2 * * *",  # switched off (VERIFY_SYNC_ENABLED); the demo runs verify itself
            FUNCTION_TIME_BUDGET_SECONDS="60",
            ACS_REQUESTS_PER_SECOND="2000",
            ACS_MAX_CONCURRENCY="8",
            D365_BATCH_SIZE="500",
            LOG_LEVEL="WARNING",
        )
        # A real Application Insights resource of the developer's, when one is set: the host sends it the
        # app's traces, dependencies and metrics (shared/telemetry).
        if os.environ.get(TELEMETRY_SETTING):
            self.settings[TELEMETRY_SETTING] = os.environ[TELEMETRY_SETTING]
            c.info("Telemetry  to the Application Insights resource of APPLICATIONINSIGHTS_CONNECTION_STRING")
        # The demo process itself reads the same settings (d365 setup, health check).
        os.environ.update(self.settings)

    def start_host(self) -> None:
        c = self.console
        c.step("Starting the local functions host (what `func start` does)")
        self.host = HostProcess(self.settings, Path(self.tmp.name), timers=True)
        c.info(
            f"Functions host {self.host.base_url} (functions: contacts_sync, events_push, optout_sync, "
            "webhook_d365, …)"
        )

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
        if self.stack is not None:
            self.stack.stop()
        if self.azurite is not None:
            self.azurite.stop()
        self.tmp.cleanup()
