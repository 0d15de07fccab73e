"""`DataverseEmulator`: an in-process Dataverse organization (Web API, Entra ID token endpoint, webhooks)
served over TLS on a free loopback port, with hooks for tests and the demo. The organization and most of
those hooks are its base, `Environment` (`environment.py`); this adds what stands in front of it: the TLS
server and its addresses, the Entra ID stand-in, service protection limits, seeded faults, request counts."""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import time

import trustme

from emulators.common import EmulatorServer, FaultConfig, FaultInjector, ServerLimit

from .app import API_PREFIX, Router
from .environment import Environment
from .identity import Identity

DEFAULT_TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"


class DataverseEmulator(Environment):
    """See the package docstring; everything here is safe to call from any thread once started."""

    def __init__(
        self,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_lifetime_seconds: int = 3600,
        change_token_max_age_seconds: float = 7 * 86400,
        max_requests: int | None = None,
        window_seconds: float = 300,
        max_concurrency: int | None = None,
        faults: FaultConfig | None = None,
        contacts: int = 0,
        seed: int = 1,
        port: int = 0,
        webhook_workers: int = 4,
        webhook_max_delay_seconds: float = 0.0,
        webhook_duplicate_rate: float = 0.0,
        webhook_row_version: bool = True,
        empty_delta_response: str = "deltalink",
    ) -> None:
        self.tenant_id = tenant_id
        self.port = port
        self.faults = FaultInjector(faults)
        self.limit = ServerLimit(
            max_requests=max_requests, window_seconds=window_seconds, max_concurrency=max_concurrency
        )
        super().__init__(
            tenant_id=tenant_id,
            client_id=client_id,
            change_token_max_age_seconds=change_token_max_age_seconds,
            seed=seed,
            webhook_workers=webhook_workers,
            webhook_max_delay_seconds=webhook_max_delay_seconds,
            webhook_duplicate_rate=webhook_duplicate_rate,
            webhook_row_version=webhook_row_version,
            empty_delta_response=empty_delta_response,
            charge=self.limit.charge,
        )
        self.identity = Identity(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            lifetime_seconds=token_lifetime_seconds,
            clock=lambda: time.monotonic() + self.clock.offset.total_seconds(),
        )
        self._request_count = 0
        self._count_lock = threading.Lock()
        self._server: EmulatorServer | None = None
        self._ca_path: str | None = None
        self._base_url: str | None = None
        self._initial_contacts = (contacts, seed)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> DataverseEmulator:
        ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        handle, self._ca_path = tempfile.mkstemp(prefix="dataverse-emulator-ca-", suffix=".pem")
        with os.fdopen(handle, "wb") as file:
            file.write(ca.cert_pem.bytes())
        self._server = EmulatorServer(Router(self).wsgi(), port=self.port, ssl_context=context).start()
        self._base_url = self._server.base_url
        self.organization.host = f"{self._server.host}:{self._server.port}"
        self.webhooks.start()
        contacts, seed_value = self._initial_contacts
        if contacts:
            self.seed_contacts(contacts, seed=seed_value)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.webhooks.stop()
        if self._ca_path and os.path.exists(self._ca_path):
            os.unlink(self._ca_path)

    def __enter__(self) -> DataverseEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("start() the emulator first")
        return self._base_url

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def scope(self) -> str:
        return f"{self.base_url}/.default"

    @property
    def ca_bundle(self) -> str:
        if self._ca_path is None:
            raise RuntimeError("start() the emulator first")
        return self._ca_path

    # -- counters for tests -------------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        return self._request_count

    def count_request(self) -> None:
        with self._count_lock:
            self._request_count += 1

    def stats(self) -> dict:
        return {
            "request_count": self.request_count,
            "tokens_issued": self.identity.issued,
            "limit": {"peak_in_flight": self.limit.peak_in_flight, "rejected": dict(self.limit.rejected)},
            "faults": dict(self.faults.counts),
            "webhooks": self.webhooks.stats.as_dict(),
            "rows": {name: self.store.count(name) for name in ("contact", "account")},
        }
