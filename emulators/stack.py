"""The whole local stack in one object: Azurite, the Dataverse emulator and the Campaign emulator on
free loopback ports, plus the app settings that point the production code at them. Used by the tests,
`make demo` and `make bench`, so all three run the app exactly the same way."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from emulators.azurite import Azurite
from emulators.campaign import CampaignEmulator
from emulators.dataverse import DataverseEmulator

# Fake credentials the emulators accept; never valid anywhere else.
D365_TENANT = "00000000-0000-0000-0000-0000000000aa"
D365_CLIENT_ID = "11111111-1111-1111-1111-111111111111"
D365_SECRET = "local-dev-secret-not-real"
ACS_CLIENT_ID = "local-acs-client"
ACS_SECRET = "local-acs-secret-not-real"
ACS_ORG = "LOCALDEV@AdobeOrg"
# The Campaign side of the Dataverse emulator's custom table `cr123_vehicle`.
VEHICLE_RESOURCE = {
    "cusVehicle": {
        "label": "Vehicles",
        "linked": True,
        "fields": {
            "externalId": "string(100)",
            "vehicleNumber": "string(32)",
            "vehicleName": "string(100)",
            "model": "string(64)",
            "price": "double",
            "ownerContactId": "string(64)",
        },
        "key": "externalId",
        "filters": {"byExternalId": "externalId"},
        # The vehicle's contact, as Adobe's integration links a child: a join on the contact's external id.
        "links": {"contact": {"target": "profile", "join": {"ownerContactId": "externalId"}}},
    }
}
# How the demo and the tests map that custom table (the sync configuration's `tables` entry).
VEHICLE_MAPPING = {
    "name": "vehicles",
    "d365_table": "cr123_vehicle",
    "acs_resource": "profileAndServicesExt/cusVehicle",
    "key": {"d365": "cr123_vehicleid", "acs": "externalId"},
    "fields": [
        {"d365": "cr123_vin", "acs": "vehicleNumber"},
        {"d365": "cr123_name", "acs": "vehicleName"},
        {"d365": "cr123_model", "acs": "model"},
        {"d365": "cr123_price", "acs": "price", "type": "Double"},
        {
            "d365": "cr123_contact",
            "acs": "ownerContactId",
            "link": {"acs_field": "contact", "target_mapping": "contacts"},
        },
    ],
}


@dataclass
class Stack:
    dataverse_options: dict[str, Any] = field(default_factory=dict)
    campaign_options: dict[str, Any] = field(default_factory=dict)
    azurite: Azurite | None = None  # pass a running one to share it

    def start(self) -> Stack:
        self._own_azurite = self.azurite is None
        if self._own_azurite:
            self.azurite = Azurite().start()
        self.dataverse = DataverseEmulator(
            tenant_id=D365_TENANT,
            client_id=D365_CLIENT_ID,
            client_secret=D365_SECRET,
            **self.dataverse_options,
        ).start()
        campaign_options = {"custom_resources": VEHICLE_RESOURCE, **self.campaign_options}
        self.campaign = CampaignEmulator(
            client_id=ACS_CLIENT_ID, client_secret=ACS_SECRET, org_id=ACS_ORG, **campaign_options
        ).start()
        return self

    def stop(self) -> None:
        for part in (getattr(self, "campaign", None), getattr(self, "dataverse", None)):
            if part is not None:
                part.stop()
        if self.azurite is not None and self._own_azurite:
            self.azurite.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def app_settings(self, *, sync_config: dict[str, Any] | None = None, **overrides: Any) -> dict[str, str]:
        """App settings for the production code, as `local.settings.json` would hold them."""
        suffix = uuid.uuid4().hex[:8]
        settings = {
            "D365_ORG_URL": self.dataverse.base_url,
            "D365_AUTHORITY_HOST": self.dataverse.base_url,
            "D365_TENANT_ID": D365_TENANT,
            "D365_CLIENT_ID": D365_CLIENT_ID,
            "D365_CLIENT_SECRET": D365_SECRET,
            "D365_CA_BUNDLE": self.dataverse.ca_bundle,
            "D365_REQUESTS_PER_SECOND": "1000",
            "ACS_TENANT": "localdev",
            "ACS_BASE_URL": self.campaign.campaign_url,
            "ACS_IMS_TOKEN_URL": self.campaign.ims_token_url,
            "ACS_CLIENT_ID": ACS_CLIENT_ID,
            "ACS_CLIENT_SECRET": ACS_SECRET,
            "ACS_REQUESTS_PER_SECOND": "1000",
            "ACS_EVENTS_JOURNAL_URL": self.campaign.journal_url,
            "ACS_IMS_ORG_ID": ACS_ORG,
            "STATE_STORAGE_CONNECTION_STRING": self.azurite.connection_string,
            "STATE_TABLE_PREFIX": f"s{suffix}",
            "STATE_CONTAINER": f"state-{suffix}",
            "RETRY_BASE_DELAY_SECONDS": "1",
            "HTTP_BACKOFF_SECONDS": "0.02",
            "HTTP_BACKOFF_MAX_SECONDS": "0.5",
        }
        if sync_config is not None:
            settings["SYNC_CONFIG"] = json.dumps(sync_config)
        settings.update({key: str(value) for key, value in overrides.items()})
        return settings
