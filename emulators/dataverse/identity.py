"""A stand-in for Entra ID: OpenID discovery, instance discovery and the client-credentials token
endpoint, accepting exactly one confidential client, signed in with its secret or, once trusted with
`add_federated_credential`, with a client assertion (workload identity federation: a managed identity's
token, see `managed_identity.py`); bearer tokens are opaque and expire."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import jwt
from werkzeug.wrappers import Request

from .messages import Reply, json_reply


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return json_reply(
        status,
        {
            "error": error,
            "error_description": description,
            "error_codes": [],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        },
    )


JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class FederatedCredential:
    """What an app registration's federated identity credential trusts: tokens of `issuer` about
    `subject` for one of `audiences`, signed by `signing_key` (Entra reads it from the issuer's JWKS)."""

    issuer: str
    subject: str
    audiences: tuple[str, ...]
    signing_key: Any


class Identity:
    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        lifetime_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant_id = tenant_id
        self._clock = clock  # seconds; follows the emulator's clock so advance_time() expires tokens
        self.client_id = client_id
        self._secret = client_secret
        self.lifetime_seconds = lifetime_seconds
        self._tokens: dict[str, float] = {}  # token -> expiry on the clock
        self._lock = threading.Lock()
        self.issued = 0
        self.federated_credentials: list[FederatedCredential] = []

    def add_federated_credential(self, credential: FederatedCredential) -> None:
        self.federated_credentials.append(credential)

    def routes(self, request: Request, base_url: str) -> Reply | None:
        """Answer identity requests; None when the path is not one of them."""
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] == ["common"] and parts[1:] == ["discovery", "instance"]:
            return self._instance_discovery(request, base_url)
        if not parts or (parts[0] != self.tenant_id and parts[0] not in ("common", "organizations")):
            if len(parts) >= 2 and parts[1:] in (
                ["v2.0", ".well-known", "openid-configuration"],
                [".well-known", "openid-configuration"],
                ["oauth2", "v2.0", "token"],
                ["oauth2", "token"],
            ):
                return _oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{parts[0]}' not found.")
            return None
        rest = parts[1:]
        if rest == ["v2.0", ".well-known", "openid-configuration"]:
            return json_reply(200, self._configuration(base_url, v2=True))
        if rest == [".well-known", "openid-configuration"]:
            return json_reply(200, self._configuration(base_url, v2=False))
        if rest in (["oauth2", "v2.0", "token"], ["oauth2", "token"]) and request.method == "POST":
            return self._token(request, base_url)
        return None

    def _configuration(self, base_url: str, *, v2: bool) -> dict:
        authority = f"{base_url}/{self.tenant_id}"
        version = "/v2.0" if v2 else ""
        return {
            "token_endpoint": f"{authority}/oauth2{version}/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base_url}/{self.tenant_id}/discovery{version}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{authority}{version}" if v2 else f"{base_url}/{self.tenant_id}/",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{authority}/oauth2{version}/authorize",
            "device_authorization_endpoint": f"{authority}/oauth2{version}/devicecode",
            "end_session_endpoint": f"{authority}/oauth2{version}/logout",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def _instance_discovery(self, request: Request, base_url: str) -> Reply:
        endpoint = request.args.get("authorization_endpoint", "")
        tenant = (urlsplit(endpoint).path.strip("/").split("/") or [self.tenant_id])[0] or self.tenant_id
        host = urlsplit(base_url).netloc
        return json_reply(
            200,
            {
                "tenant_discovery_endpoint": f"{base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            },
        )

    def _token(self, request: Request, base_url: str) -> Reply:
        form = request.form
        client_id, secret = form.get("client_id"), form.get("client_secret")
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Basic "):  # client_secret_basic
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = (unquote(p) for p in decoded.partition(":"))
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(
                400,
                "unsupported_grant_type",
                f"AADSTS70003: The app requested an unsupported grant type '{form.get('grant_type')}'.",
            )
        if client_id != self.client_id:
            return _oauth_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{self.tenant_id}'.",
            )
        assertion_type, assertion = form.get("client_assertion_type"), form.get("client_assertion")
        if assertion_type is not None or assertion is not None:
            refused = self._refused_assertion(assertion_type, assertion)
            if refused is not None:
                return refused
        elif secret is None:
            return _oauth_error(
                401,
                "invalid_client",
                "AADSTS7000218: The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
            )
        elif not secrets.compare_digest(secret, self._secret):
            return _oauth_error(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                f"the request is the client secret value, not the client secret ID, for a secret "
                f"added to app '{self.client_id}'.",
            )
        scopes = (form.get("scope") or "").split()
        expected = f"{base_url}/.default"
        if not any(s.rstrip("/") in (expected, f"{base_url}//.default") for s in scopes):
            return _oauth_error(
                400,
                "invalid_scope",
                f"AADSTS1002012: The provided value for scope {' '.join(scopes) or '(none)'} is not "
                f"valid. Client credential flows must have a scope value with /.default suffixed to "
                f"the resource identifier {base_url}.",
            )
        token = secrets.token_urlsafe(48)
        with self._lock:
            now = self._clock()
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            self._tokens[token] = now + self.lifetime_seconds
            self.issued += 1
        return json_reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.lifetime_seconds,
                "ext_expires_in": self.lifetime_seconds,
                "access_token": token,
            },
        )

    def _refused_assertion(self, assertion_type: str | None, assertion: str | None) -> Reply | None:
        """None when the assertion is a valid token a federated credential of the app trusts."""
        if assertion_type != JWT_BEARER or not assertion:
            return _oauth_error(
                400,
                "invalid_request",
                f"AADSTS50027: client_assertion_type must be {JWT_BEARER} with a client_assertion.",
            )
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return _oauth_error(400, "invalid_client", f"AADSTS50027: Invalid JWT token. {exc}")
        for credential in self.federated_credentials:
            if (claims.get("iss"), claims.get("sub")) != (credential.issuer, credential.subject):
                continue
            try:
                jwt.decode(
                    assertion,
                    credential.signing_key,
                    algorithms=[header.get("alg", "RS256")],
                    audience=list(credential.audiences),
                    issuer=credential.issuer,
                )
            except jwt.ExpiredSignatureError:
                return _oauth_error(
                    400,
                    "invalid_client",
                    "AADSTS700024: Client assertion is not within its valid time range.",
                )
            except jwt.InvalidAudienceError:
                return _oauth_error(
                    400,
                    "invalid_client",
                    f"AADSTS700212: No matching federated identity record found for presented "
                    f"assertion audience '{claims.get('aud')}'.",
                )
            except jwt.PyJWTError as exc:
                return _oauth_error(
                    400, "invalid_client", f"AADSTS50013: Assertion failed signature validation. {exc}"
                )
            return None
        return _oauth_error(
            400,
            "invalid_client",
            f"AADSTS70021: No matching federated identity record found for presented assertion. Assertion "
            f"Issuer: '{claims.get('iss')}'. Assertion Subject: '{claims.get('sub')}'.",
        )

    def authenticated(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self._lock:
            expiry = self._tokens.get(authorization[7:].strip())
        return expiry is not None and expiry > self._clock()
