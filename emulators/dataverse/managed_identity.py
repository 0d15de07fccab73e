"""A stand-in for the managed-identity endpoint of App Service / Azure Functions (dev/test only).

On Azure the platform sets `IDENTITY_ENDPOINT` (a plain-HTTP URL on the instance) and `IDENTITY_HEADER`;
`GET IDENTITY_ENDPOINT?api-version=2019-08-01&resource=<resource>&client_id=<identity>` with the header
`X-IDENTITY-HEADER` answers `{"access_token", "expires_on", "resource", "token_type", "client_id"}`.
This serves the same for one user-assigned identity. Its tokens are RS256 JWTs as Entra issues them for a
managed identity (`iss` = `https://login.microsoftonline.com/<tenant>/v2.0`, `sub` = the identity's
principal id, `aud` = the resource), so the Entra stand-in (`identity.py`) can accept them as a
federated credential's client assertion after checking signature, issuer, subject, audience and expiry.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer

API_VERSION = "2019-08-01"


@dataclass(frozen=True)
class IssuedToken:
    resource: str
    client_id: str


class ManagedIdentityEndpoint:
    def __init__(self, *, tenant_id: str, lifetime_seconds: int = 86400) -> None:
        self.tenant_id = tenant_id
        self.client_id = str(uuid.uuid4())  # the identity's client (application) id
        self.principal_id = str(uuid.uuid4())  # its object id: the federated credential's subject
        self.header = secrets.token_hex(16)  # IDENTITY_HEADER
        self.issuer = f"https://login.microsoftonline.com/{tenant_id}/v2.0"
        self.lifetime_seconds = lifetime_seconds
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = self._key.public_key()
        self.issued: list[IssuedToken] = []
        self._server: EmulatorServer | None = None

    @property
    def url(self) -> str:
        """IDENTITY_ENDPOINT."""
        if self._server is None:
            raise RuntimeError("start() the endpoint first")
        return f"{self._server.base_url}/msi/token"

    def environment(self) -> dict[str, str]:
        """What the platform sets on a Function App instance."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header}

    def start(self) -> ManagedIdentityEndpoint:
        self._server = EmulatorServer(self._wsgi).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> ManagedIdentityEndpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wsgi(self, environ, start_response):
        return self._answer(Request(environ))(environ, start_response)

    def _answer(self, request: Request) -> Response:
        if request.path != "/msi/token" or request.method != "GET":
            return _json(404, {"statusCode": 404, "message": "Not found"})
        if request.headers.get("X-IDENTITY-HEADER") != self.header:
            return _json(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"})
        args = request.args
        if args.get("api-version") != API_VERSION or not args.get("resource"):
            return _json(400, {"statusCode": 400, "message": "api-version 2019-08-01 and resource required"})
        if args.get("client_id") != self.client_id:
            # As App Service: a user-assigned identity that is not assigned to the app is not found.
            return _json(400, {"statusCode": 400, "message": "No managed identity found for the client_id"})
        now = int(time.time())
        expires = now + self.lifetime_seconds
        claims = {
            "iss": self.issuer,
            "sub": self.principal_id,
            "oid": self.principal_id,
            "aud": args["resource"],
            "appid": self.client_id,
            "tid": self.tenant_id,
            "iat": now,
            "nbf": now,
            "exp": expires,
        }
        self.issued.append(IssuedToken(args["resource"], self.client_id))
        return _json(
            200,
            {
                "access_token": jwt.encode(claims, self._key, algorithm="RS256"),
                "expires_on": str(expires),
                "resource": args["resource"],
                "token_type": "Bearer",
                "client_id": self.client_id,
            },
        )


def _json(status: int, payload: dict) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json; charset=utf-8")
