"""Shared fixtures for the Dataverse tests: emulators started on free loopback ports, and production
clients (MSAL token provider + DataverseClient) pointed at them."""

from __future__ import annotations

import pytest

from shared.d365.auth import DataverseTokenProvider
from shared.d365.client import DataverseClient
from shared.http import RetryPolicy

TENANT_ID = "3f2b8c1d-6a4e-4f0b-9c7d-2e1a5b8f0c34"
CLIENT_ID = "8d1e2f3a-4b5c-4d6e-8f70-9a1b2c3d4e5f"
CLIENT_SECRET = "test-secret-not-real"


@pytest.fixture
def start_emulator():
    """Start a `DataverseEmulator` with the given options; every one started is stopped afterwards."""
    from emulators.dataverse import DataverseEmulator

    started = []

    def start(**options):
        options = {"tenant_id": TENANT_ID, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **options}
        emulator = DataverseEmulator(**options).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(start_emulator):
    return start_emulator()


@pytest.fixture
def client_secret() -> str:
    return CLIENT_SECRET


@pytest.fixture
def make_token_provider():
    """Build the production MSAL token provider for an emulator's authority; closed afterwards."""
    providers = []

    def make(emulator, *, client_secret=CLIENT_SECRET) -> DataverseTokenProvider:
        provider = DataverseTokenProvider(
            authority=emulator.authority,
            client_id=CLIENT_ID,
            client_secret=client_secret,
            scope=emulator.scope,
            ca_bundle=emulator.ca_bundle,
        )
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


@pytest.fixture
def make_client(make_token_provider):
    """Build a production `DataverseClient` for an emulator; closed afterwards."""
    clients = []

    def make(emulator, *, client_secret=CLIENT_SECRET, **options) -> DataverseClient:
        options.setdefault("retry", RetryPolicy(total=10, backoff_factor=0.01, backoff_max=0.05))
        client = DataverseClient(
            org_url=emulator.base_url,
            token_provider=make_token_provider(emulator, client_secret=client_secret),
            ca_bundle=emulator.ca_bundle,
            **options,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
