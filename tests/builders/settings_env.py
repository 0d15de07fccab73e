"""A complete set of app settings with fake values, for tests that need valid settings."""

from __future__ import annotations


def valid_environment(**overrides: str) -> dict[str, str]:
    env = {
        "D365_ORG_URL": "https://contoso.crm.dynamics.com",
        "D365_TENANT_ID": "00000000-0000-0000-0000-0000000000aa",
        "D365_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
        "D365_CLIENT_SECRET": "test-secret-not-real",
        "ACS_TENANT": "contoso-mkt-stage",
        "ACS_CLIENT_ID": "acs-client-id",
        "ACS_CLIENT_SECRET": "test-secret-not-real",
        "ACS_EVENTS_JOURNAL_URL": "https://events-va6.adobe.io/events/organizations/1/integrations/2/3",
        "ACS_IMS_ORG_ID": "ABC123@AdobeOrg",
        "STATE_STORAGE_ACCOUNT_NAME": "contosostate",
    }
    env.update(overrides)
    return env
