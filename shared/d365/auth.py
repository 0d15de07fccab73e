"""Tokens for the Dataverse Web API, one provider per way of signing in (setting `D365_AUTH`):

- `client_secret`, `certificate`: OAuth2 client credentials through MSAL (Entra ID confidential client),
  `DataverseTokenProvider`.
- `managed_identity_federation`: no Dataverse secret at all. The app registration trusts the Function
  App's user-assigned managed identity as a federated credential; azure-identity's
  `ClientAssertionCredential` sends the identity's token for `api://AzureADTokenExchange` (from
  `ManagedIdentityCredential`) as the client assertion. `AzureIdentityTokenProvider`.
- `azure_cli`: an operator's own `az login` (operator commands on a workstation, where no managed
  identity exists), also `AzureIdentityTokenProvider`.

Every provider answers `authorization()` with `Bearer <token>` from a cache refreshed before expiry,
`invalidate()` after a 401, and `close()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.identity import AzureCliCredential, ClientAssertionCredential, ManagedIdentityCredential
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from shared.errors import AuthenticationError, ConnectionFailedError
from shared.http import environment_proxies

SERVICE = "entra"
# The audience of a managed identity's token when it is a federated credential (Entra's token exchange).
TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"


def _reveal(value: Any) -> Any:
    """Accept pydantic `SecretStr` (or anything with `get_secret_value`) as well as plain values."""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


class _VerifyingSession(requests.Session):
    """A Session for MSAL that always verifies TLS against `ca_bundle` and applies a default timeout.

    requests lets REQUESTS_CA_BUNDLE from the environment override `Session.verify`, so the bundle must be
    passed on every request; MSAL also refuses its own `verify=` once an `http_client` is given.
    """

    def __init__(self, *, ca_bundle: str | None, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.trust_env = False  # see shared.http.new_session
        self.proxies.update(environment_proxies())
        self._ca_bundle = ca_bundle
        self._timeout = timeout

    def request(self, method, url, *args, **kwargs):
        if self._ca_bundle is not None:
            kwargs["verify"] = self._ca_bundle
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().request(method, url, *args, **kwargs)


class DataverseTokenProvider:
    """Gives `Authorization: Bearer <token>` for the Dataverse scope; MSAL caches the token until it
    nears expiry. `invalidate()` (after a 401) drops the cached token so the next call fetches a new one.

    Exactly one of `client_secret` or `certificate` (MSAL's dict: `private_key`, `thumbprint`, optional
    `public_certificate`) is required. A non-Entra authority (a test emulator) skips authority
    validation and instance discovery.
    """

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        authority: str | None = None,
        client_id: str,
        client_secret: Any = None,
        certificate: Mapping[str, Any] | None = None,
        scope: str,
        ca_bundle: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        if authority is None:
            if not tenant_id:
                raise ValueError("tenant_id or authority is required")
            authority = f"https://login.microsoftonline.com/{tenant_id}"
        if (client_secret is None) == (certificate is None):
            raise ValueError("pass exactly one of client_secret or certificate")
        self.authority = authority.rstrip("/")
        self.client_id = client_id
        self.scope = scope
        self._credential: Any = (
            _reveal(client_secret)
            if client_secret is not None
            else {name: _reveal(value) for name, value in (certificate or {}).items()}
        )
        self._http = _VerifyingSession(ca_bundle=ca_bundle, timeout=timeout)
        self._app: msal.ConfidentialClientApplication | None = None
        # One token request at a time: concurrent callers on a cold cache wait and then hit the cache.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DataverseTokenProvider(authority={self.authority!r}, client_id={self.client_id!r})"

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            entra = urlsplit(self.authority).hostname in WELL_KNOWN_AUTHORITY_HOSTS
            options = {} if entra else {"validate_authority": False, "instance_discovery": False}
            # MSAL reads the authority's OpenID configuration here, hence the same error mapping.
            self._app = self._call(
                lambda: msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._credential,
                    authority=self.authority,
                    http_client=self._http,
                    **options,
                )
            )
        return self._app

    def _call(self, action):
        try:
            return action()
        except requests.RequestException as exc:
            raise ConnectionFailedError(
                f"token endpoint {self.authority} unreachable: {type(exc).__name__}",
                may_have_applied=False,
                service=SERVICE,
            ) from exc
        except ValueError as exc:
            # MSAL raises ValueError for an authority whose OpenID configuration it cannot use.
            raise AuthenticationError(f"authority {self.authority} rejected: {exc}", service=SERVICE) from exc

    def authorization(self) -> str:
        with self._lock:
            app = self._application()
            result = self._call(lambda: app.acquire_token_for_client(scopes=[self.scope]))
        if "access_token" not in result:
            error = result.get("error")
            raise AuthenticationError(
                f"token request for {self.scope} failed: {error}: {result.get('error_description')}",
                code=error,
                service=SERVICE,
            )
        return f"Bearer {result['access_token']}"

    def invalidate(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.remove_tokens_for_client()

    def close(self) -> None:
        self._http.close()


class AzureIdentityTokenProvider:
    """Gives `Authorization: Bearer <token>` for the Dataverse scope from an azure-identity credential,
    which caches the token until it nears expiry; `invalidate()` (after a 401) builds a new credential,
    so the next call fetches a new token. azure-identity's pipeline applies the timeouts and retries
    (429 and 5xx, `Retry-After` honoured).
    """

    def __init__(
        self,
        credential_factory: Callable[[], TokenCredential],
        *,
        scope: str,
        name: str,
        owned: tuple[Any, ...] = (),
    ) -> None:
        self.scope = scope
        self._name = name
        self._factory = credential_factory
        self._owned = owned  # what the factory's credentials share, closed with the provider
        self._credential = credential_factory()
        # One token request at a time: concurrent callers on a cold cache wait and then hit the cache.
        self._lock = threading.Lock()

    @classmethod
    def managed_identity_federation(
        cls,
        *,
        tenant_id: str,
        client_id: str,
        managed_identity_client_id: str,
        scope: str,
        authority_host: str = "https://login.microsoftonline.com",
        ca_bundle: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
    ) -> AzureIdentityTokenProvider:
        """The app registration `client_id` in `tenant_id`, signed in with no secret: its federated
        credential trusts the user-assigned managed identity `managed_identity_client_id`."""
        transport: dict[str, Any] = {"connection_timeout": timeout[0], "read_timeout": timeout[1]}
        if ca_bundle is not None:
            transport["connection_verify"] = ca_bundle
        managed_identity = ManagedIdentityCredential(client_id=managed_identity_client_id, **transport)

        def assertion() -> str:
            # azure-identity caches this token too; it is asked again only when a Dataverse token is due.
            return managed_identity.get_token(TOKEN_EXCHANGE_SCOPE).token

        return cls(
            lambda: ClientAssertionCredential(
                tenant_id, client_id, assertion, authority=authority_host, **transport
            ),
            scope=scope,
            name=f"federated credential of {client_id} (managed identity {managed_identity_client_id})",
            owned=(managed_identity,),
        )

    @classmethod
    def azure_cli(cls, *, tenant_id: str, scope: str) -> AzureIdentityTokenProvider:
        """The operator signed in with `az login` (a Dataverse user with the roles `d365 setup` needs)."""
        return cls(lambda: AzureCliCredential(tenant_id=tenant_id), scope=scope, name="Azure CLI login")

    def __repr__(self) -> str:
        return f"AzureIdentityTokenProvider({self._name}, scope={self.scope!r})"

    def authorization(self) -> str:
        try:
            with self._lock:
                token = self._credential.get_token(self.scope)
        except ClientAuthenticationError as exc:  # CredentialUnavailableError is one too
            raise AuthenticationError(
                f"token request for {self.scope} with the {self._name} failed: {exc.message}", service=SERVICE
            ) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise ConnectionFailedError(
                f"token endpoint unreachable for the {self._name}: {type(exc).__name__}",
                may_have_applied=False,
                service=SERVICE,
            ) from exc
        return f"Bearer {token.token}"

    def invalidate(self) -> None:
        with self._lock:
            stale, self._credential = self._credential, self._factory()
        _close(stale)

    def close(self) -> None:
        for credential in (self._credential, *self._owned):
            _close(credential)


def _close(credential: Any) -> None:
    close = getattr(credential, "close", None)
    if close is not None:
        close()
