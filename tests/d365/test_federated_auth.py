"""D365_AUTH=managed_identity_federation: the app reaches Dataverse with no secret. azure-identity's
ClientAssertionCredential sends the managed identity's token for api://AzureADTokenExchange (from the
App Service-style managed-identity endpoint, IDENTITY_ENDPOINT + IDENTITY_HEADER) as the client
assertion to the Entra stand-in over TLS, which checks it against the app registration's federated
credential (issuer, subject, audience, signature) before it issues the Dataverse token."""

from __future__ import annotations

import pytest

from emulators.dataverse.identity import FederatedCredential
from emulators.dataverse.managed_identity import ManagedIdentityEndpoint
from shared.app import App
from shared.d365.auth import AzureIdentityTokenProvider
from shared.errors import AuthenticationError
from shared.settings import SettingsError, load_settings
from tests.builders.settings_env import valid_environment
from tests.d365.conftest import CLIENT_ID, TENANT_ID

EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


@pytest.fixture
def managed_identity(monkeypatch):
    """The Function App's user-assigned identity, as the platform exposes it to the worker."""
    with ManagedIdentityEndpoint(tenant_id=TENANT_ID) as endpoint:
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        yield endpoint


def trust(emulator, identity: ManagedIdentityEndpoint, *, audience: str = EXCHANGE_AUDIENCE) -> None:
    """What the admin configures on the app registration (the Bicep outputs these three values)."""
    emulator.identity.add_federated_credential(
        FederatedCredential(
            issuer=f"https://login.microsoftonline.com/{TENANT_ID}/v2.0",
            subject=identity.principal_id,
            audiences=(audience,),
            signing_key=identity.public_key,
        )
    )


@pytest.fixture
def make_federated_provider():
    providers = []

    def make(emulator, identity: ManagedIdentityEndpoint, **options) -> AzureIdentityTokenProvider:
        options = {"managed_identity_client_id": identity.client_id, **options}
        provider = AzureIdentityTokenProvider.managed_identity_federation(
            tenant_id=TENANT_ID,
            client_id=CLIENT_ID,
            scope=emulator.scope,
            authority_host=emulator.base_url,
            ca_bundle=emulator.ca_bundle,
            **options,
        )
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


def federation_settings(emulator, identity: ManagedIdentityEndpoint):
    environment = valid_environment(
        D365_AUTH="managed_identity_federation",
        D365_MANAGED_IDENTITY_CLIENT_ID=identity.client_id,
        D365_ORG_URL=emulator.base_url,
        D365_TENANT_ID=TENANT_ID,
        D365_CLIENT_ID=CLIENT_ID,
        D365_AUTHORITY_HOST=emulator.base_url,
        D365_CA_BUNDLE=emulator.ca_bundle,
    )
    del environment["D365_CLIENT_SECRET"]
    return load_settings(environment)


def test_the_app_reads_dataverse_with_a_token_its_managed_identity_asserted(emulator, managed_identity):
    trust(emulator, managed_identity)
    app = App(federation_settings(emulator, managed_identity))
    try:
        who = app.dataverse.pipeline.request("GET", "WhoAmI").json()
    finally:
        app.dataverse.close()
    assert who["OrganizationId"]
    assert emulator.identity.issued == 1
    assert [(t.resource, t.client_id) for t in managed_identity.issued] == [
        (EXCHANGE_AUDIENCE, managed_identity.client_id)
    ]


def test_the_token_is_cached_and_a_new_one_is_fetched_after_invalidate(
    emulator, managed_identity, make_federated_provider
):
    trust(emulator, managed_identity)
    provider = make_federated_provider(emulator, managed_identity)
    first = provider.authorization()
    assert provider.authorization() == first
    assert emulator.identity.authenticated(first)
    provider.invalidate()
    second = provider.authorization()
    assert second != first and emulator.identity.authenticated(second)
    assert emulator.identity.issued == 2


def test_without_the_assertion_entra_refuses_the_request(emulator, managed_identity, make_federated_provider):
    """The request the credential would send, less its assertion: no secret, no assertion, no token."""
    import requests

    trust(emulator, managed_identity)
    form = {"client_id": CLIENT_ID, "grant_type": "client_credentials", "scope": emulator.scope}
    token_url = f"{emulator.authority}/oauth2/v2.0/token"
    refused = requests.post(token_url, data=form, verify=emulator.ca_bundle, timeout=10)
    assert refused.status_code == 401
    assert "AADSTS7000218" in refused.json()["error_description"]
    assertion = make_federated_provider(emulator, managed_identity)
    assert assertion.authorization().startswith("Bearer ")  # the same request with it succeeds


def test_an_app_registration_that_does_not_trust_the_identity_fails_with_a_clear_error(
    emulator, managed_identity, make_federated_provider
):
    provider = make_federated_provider(emulator, managed_identity)
    with pytest.raises(AuthenticationError, match="AADSTS70021") as caught:
        provider.authorization()
    assert managed_identity.principal_id in str(caught.value)
    assert emulator.identity.issued == 0


def test_a_credential_for_another_audience_refuses_the_assertion(
    emulator, managed_identity, make_federated_provider
):
    trust(emulator, managed_identity, audience="api://SomethingElse")
    with pytest.raises(AuthenticationError, match="AADSTS700212"):
        make_federated_provider(emulator, managed_identity).authorization()


def test_a_token_of_another_identity_is_refused(emulator, managed_identity, make_federated_provider):
    """The identity the app registration trusts is not the one the endpoint answers for."""
    with ManagedIdentityEndpoint(tenant_id=TENANT_ID) as other:
        trust(emulator, other)
    with pytest.raises(AuthenticationError, match="AADSTS70021"):
        make_federated_provider(emulator, managed_identity).authorization()


def test_an_identity_not_assigned_to_the_app_fails_with_a_clear_error(
    emulator, managed_identity, make_federated_provider
):
    trust(emulator, managed_identity)
    provider = make_federated_provider(
        emulator, managed_identity, managed_identity_client_id="00000000-0000-0000-0000-00000000beef"
    )
    with pytest.raises(AuthenticationError, match="managed identity"):
        provider.authorization()
    assert emulator.identity.issued == 0


def test_federation_needs_the_identity_client_id_and_no_secret():
    environment = valid_environment(D365_AUTH="managed_identity_federation")
    del environment["D365_CLIENT_SECRET"]
    with pytest.raises(SettingsError) as caught:
        load_settings(environment)
    assert dict(caught.value.problems) == {
        "D365_MANAGED_IDENTITY_CLIENT_ID": "missing (required while D365_AUTH is managed_identity_federation)"
    }
    settings = load_settings({**environment, "D365_MANAGED_IDENTITY_CLIENT_ID": "a-client-id"})
    assert settings.d365_auth_method == "managed_identity_federation"
    assert settings.d365_client_secret is None


def test_without_d365_auth_the_credentials_given_choose_the_method():
    assert load_settings(valid_environment()).d365_auth_method == "client_secret"
    with_certificate = valid_environment(D365_CLIENT_CERTIFICATE_PATH="/certs/d365.pem")
    del with_certificate["D365_CLIENT_SECRET"]
    assert load_settings(with_certificate).d365_auth_method == "certificate"


# -- the operator's own login (D365_AUTH=azure_cli: the hooks and the runbook on a workstation) -----------


def test_operator_commands_reach_dataverse_with_the_azure_cli_login(
    emulator, make_token_provider, tmp_path, monkeypatch
):
    """`az account get-access-token` is faked: it answers a token Entra (the stand-in) issued."""
    import json
    import time

    token = make_token_provider(emulator).authorization().removeprefix("Bearer ")
    fake_az = tmp_path / "az"
    answer = json.dumps({"accessToken": token, "expires_on": int(time.time()) + 3600, "tokenType": "Bearer"})
    fake_az.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/argv\ncat <<'EOF'\n{answer}\nEOF\n")
    fake_az.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    environment = valid_environment(
        D365_AUTH="azure_cli",
        D365_ORG_URL=emulator.base_url,
        D365_TENANT_ID=TENANT_ID,
        D365_CA_BUNDLE=emulator.ca_bundle,
    )
    del environment["D365_CLIENT_SECRET"]
    app = App(load_settings(environment))
    try:
        assert app.dataverse.pipeline.request("GET", "WhoAmI").json()["OrganizationId"]
    finally:
        app.dataverse.close()
    [argv] = (tmp_path / "argv").read_text().splitlines()
    expected = ["account", "get-access-token", "--output", "json", "--resource", emulator.base_url]
    assert argv.split() == [*expected, "--tenant", TENANT_ID]
