"""`CampaignEmulator`: Adobe IMS + Campaign Standard REST API + one Adobe I/O Events journal on one loopback
port, with the Python and HTTP (`/_emulator/...`) controls tests and the demo use.

Routes (plain http on 127.0.0.1):
  POST /ims/token/v3                                   IMS client credentials (no faults, no rate limit)
  /<tenant>/campaign/profileAndServices/profile[...]   out-of-the-box fields only (`cus*` hidden/refused)
  /<tenant>/campaign/profileAndServicesExt/<res>[...]  the profile with `cus*` fields, linked custom resources
  /<tenant>/campaign/customResources/<res>[...]        unlinked custom resources
  GET /events/organizations/<o>/integrations/<i>/<r>   the I/O Events journal (faults, no Campaign rate limit)
  /_emulator/...                                       admin (no auth, faults or limits), see `admin.py`

Filters on the profile: `byEmail?email=`, `byText?text=` (built in) and two customer-defined filters an
instance would be configured with: `byExternalId?externalId_parameter=` and
`byLastModifiedSince?since_parameter=<timestamp>` (lastModified >= the parameter, inclusive; ordered by
lastModified ascending unless `_order` says otherwise). Custom resources get the filters their config names
(default `cusVehicle`: `byExternalId?externalId_parameter=`). Filters chain (`/byEmail/byText?...`) and
`.../_count` counts. `_lineCount` defaults to 25 and is capped at `max_line_count`; `next.href` is absolute;
on tables over `big_table_threshold` rows, `next` appears only with `_forcePagination=true` (as in Campaign).

Metadata (`.../resourceType/<res>` and its filters, see `metadata.py`): `profile_extension` declares the
profile's `cus*` fields (described before any record has them); `remove_from_metadata` breaks one piece.
`wrap_single_records=True` answers a GET by PKey as `{"content": [record]}` (the other shape Adobe shows).

Writes: `lastModified` is bumped by every non-empty PATCH; each opt-out flag's `...LastModified`
(`blackListAllLastModified` for `blackList`) only when that flag changes value; read-only fields in a body
are ignored. Data errors answer HTTP 500 `{"code", "error_code", "message", "logId"}` (message starts with
`RST-360011 An error has occurred - please contact your administrator.`); unknown keys answer 404 in the
same shape. Engine calls: POST = 1 insert, PATCH = 1 update, DELETE = 1 delete, any GET = 1 read (counted
once the gateway let the call through, whether or not the engine then refused it).
"""

from __future__ import annotations

import threading
import uuid
import zlib
from typing import Any

from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer, FaultConfig, FaultInjector, ServerLimit, guarded

from .admin import AdminApi
from .app import CampaignApi, check_gateway
from .clock import EmulatedClock
from .ims import TokenIssuer
from .journal import Journal
from .responses import Unavailable, gateway_error, throttled
from .schema import DEFAULT_CUSTOM_RESOURCES, Resource, custom_resource, profile_resource
from .seed import EVENT_TYPES, build_events
from .store import Store, copy_row


class CampaignEmulator:
    def __init__(
        self,
        client_id: str = "campaign-emulator-client",
        client_secret: str = "campaign-emulator-secret",
        org_id: str = "ABC123@AdobeOrg",
        tenant: str = "acme",
        token_lifetime_seconds: int = 86399,
        requests_per_second: int | None = None,
        max_concurrency: int | None = None,
        faults: FaultConfig | None = None,
        custom_resources: dict[str, dict[str, Any]] | None = None,
        journal_retention_seconds: float = 7 * 86400,
        port: int = 0,
        *,
        journal_retry_after_seconds: int = 10,
        big_table_threshold: int = 100_000,
        max_line_count: int = 1000,
        profile_extension: dict[str, str] | None = None,
        wrap_single_records: bool = False,
    ) -> None:
        self.org_id = org_id
        self.tenant = tenant
        self.clock = EmulatedClock()
        resources: dict[str, Resource] = {"profile": profile_resource(profile_extension)}
        configs = DEFAULT_CUSTOM_RESOURCES if custom_resources is None else custom_resources
        resources.update({name: custom_resource(name, config) for name, config in configs.items()})
        self.store = Store(resources, self.clock)
        self.tokens = TokenIssuer(
            client_id=client_id,
            client_secret=client_secret,
            lifetime_seconds=token_lifetime_seconds,
            clock=self.clock,
        )
        consumer_org = zlib.crc32(org_id.encode()) % 100_000
        integration = zlib.crc32(f"{org_id}/{tenant}".encode()) % 100_000
        registration = uuid.uuid5(uuid.NAMESPACE_URL, f"{org_id}/{tenant}/campaign-email-events")
        self.journal = Journal(
            path=f"/events/organizations/{consumer_org}/integrations/{integration}/{registration}",
            retention_seconds=journal_retention_seconds,
            clock=self.clock,
            retry_after_seconds=journal_retry_after_seconds,
        )
        self.faults = FaultInjector(faults)
        self.limit = ServerLimit(
            max_requests=requests_per_second, window_seconds=1, max_concurrency=max_concurrency
        )
        self.api = CampaignApi(
            store=self.store,
            tokens=self.tokens,
            tenant=tenant,
            big_table_threshold=big_table_threshold,
            max_line_count=max_line_count,
            wrap_single_records=wrap_single_records,
        )
        self._admin = AdminApi(self)
        self._port = port
        self._server: EmulatorServer | None = None
        self._requests = 0
        self._requests_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> CampaignEmulator:
        self._server = EmulatorServer(self._wsgi(), port=self._port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> CampaignEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.base_url

    @property
    def ims_token_url(self) -> str:
        return f"{self.base_url}/ims/token/v3"

    @property
    def campaign_url(self) -> str:
        return f"{self.base_url}/{self.tenant}/campaign"

    @property
    def journal_url(self) -> str:
        return f"{self.base_url}{self.journal.path}"

    # -- counters -------------------------------------------------------------------------------------

    @property
    def engine_calls(self) -> dict[str, int]:
        return self.store.engine_calls

    @property
    def engine_calls_by_resource(self) -> dict[str, dict[str, int]]:
        return self.store.engine_calls_by_resource

    @property
    def tokens_issued(self) -> int:
        return self.tokens.tokens_issued

    @property
    def request_count(self) -> int:
        return self._requests

    def reset_counters(self) -> None:
        self.store.reset_counters()
        with self._requests_lock:
            self._requests = 0

    def stats(self) -> dict[str, Any]:
        """Every counter at once (`GET /_emulator/stats`)."""
        with self.store.lock:
            engine_calls = dict(self.engine_calls)
            by_resource = {name: dict(counts) for name, counts in self.engine_calls_by_resource.items()}
            records = {name: len(table) for name, table in self.store.tables.items()}
        return {
            "engine_calls": engine_calls,
            "engine_calls_by_resource": by_resource,
            "request_count": self.request_count,
            "tokens_issued": self.tokens_issued,
            "limit": {
                "peak_in_flight": self.limit.peak_in_flight,
                "rejected": dict(self.limit.rejected),
            },
            "faults": dict(self.faults.counts),
            "journal": {"published": self.journal.published, "retained": self.journal.retained},
            "records": records,
        }

    # -- direct access (as a Campaign user or workflow would change data) ------------------------------

    def snapshot(self, resource: str = "profile") -> list[dict[str, Any]]:
        """Stored rows (deep copies): fields as stored, links as the target's PKey, no `href`."""
        return self.store.snapshot(resource)

    def find(self, resource: str, **fields: Any) -> list[dict[str, Any]]:
        with self.store.lock:
            rows = self.store.table(resource).rows()
            return [copy_row(row) for row in rows if all(row.get(k) == v for k, v in fields.items())]

    def put_profile(self, profile: dict[str, Any]) -> str:
        """Create a profile (any `cus*` field allowed); raises `DataError` as the API would refuse it."""
        values = self.store.table("profile").resource.validate(profile, extended=True)
        return self.store.create("profile", values)["PKey"]

    def update_profile(self, pkey: str, changes: dict[str, Any]) -> None:
        values = self.store.table("profile").resource.validate(changes, extended=True)
        self.store.update("profile", pkey, values)

    def put_duplicate(self, pkey: str, resource: str = "profile") -> str:
        """Test hook: a copy of a record under a new PKey with the same identification key, as a Campaign
        instance without a unique index on that key allows (listings and the key's filter find both)."""
        with self.store.lock:
            table = self.store.table(resource)
            original = table.get(pkey)
            if original is None:
                raise KeyError(pkey)
            skip = {"PKey", "href", "created", "lastModified"}
            values = {name: value for name, value in copy_row(original).items() if name not in skip}
            return table.insert(values, unique_key=False)["PKey"]

    def publish_events(
        self, events: list[dict[str, Any]], *, duplicate_rate: float = 0.0, shuffle_seed: int | None = None
    ) -> list[str]:
        return self.journal.publish(events, duplicate_rate=duplicate_rate, shuffle_seed=shuffle_seed)

    def generate_events(
        self, n: int, *, types: tuple[str, ...] = EVENT_TYPES, seed: int = 1
    ) -> list[dict[str, Any]]:
        """Build `n` events about stored profiles (see `seed.py` for the body) and publish them."""
        with self.store.lock:
            profiles = [
                {"PKey": row["PKey"], "externalId": row["externalId"], "email": row["email"]}
                for row in self.store.table("profile").rows()
            ]
        events = build_events(profiles, n, tenant=self.tenant, now=self.clock.now(), types=types, seed=seed)
        self.publish_events(events)
        return events

    def remove_from_metadata(
        self,
        resource: str,
        *,
        field: str | None = None,
        filter: str | None = None,
        link: str | None = None,
        key: bool = False,
    ) -> None:
        """Hide a field, filter, link or the identification key's field from `resourceType` metadata (as
        on an instance where the admin skipped that step); `restore_metadata()` undoes it."""
        if resource not in self.store.tables:
            raise KeyError(f"unknown resource {resource}")
        self.api.metadata.remove(resource, field=field, filter=filter, link=link, key=key)

    def restore_metadata(self) -> None:
        self.api.metadata.restore()

    def advance_time(self, seconds: float) -> None:
        """Move the emulated clock: tokens expire, journal events past retention are purged."""
        self.clock.advance(seconds)
        self.journal.purge()

    # -- HTTP -----------------------------------------------------------------------------------------

    def _wsgi(self):
        unavailable = Unavailable()
        campaign = guarded(
            self._campaign, faults=self.faults, limit=self.limit, throttled=throttled, unavailable=unavailable
        )
        # The journal is another Adobe service: same faults, but not Campaign's licence rate limit.
        events = guarded(
            self._events,
            faults=self.faults,
            limit=ServerLimit(),
            throttled=throttled,
            unavailable=unavailable,
        )

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path.startswith("/_emulator/"):
                return self._admin.handle(Request(environ))(environ, start_response)
            if path.startswith("/ims/"):
                return self._ims(Request(environ))(environ, start_response)
            if path.startswith("/events/"):
                return events(environ, start_response)
            return campaign(environ, start_response)

        return app

    def _count_request(self) -> None:
        with self._requests_lock:
            self._requests += 1

    def _ims(self, request: Request) -> Response:
        if request.path != "/ims/token/v3":
            return gateway_error(404, "404000", "Not found")
        if request.method != "POST":
            return gateway_error(405, "405000", "Method not allowed")
        return self.tokens.handle(request)

    def _campaign(self, request: Request) -> Response:
        self._count_request()
        if not request.path.startswith(self.api.prefix):
            return gateway_error(404, "404000", "Not found")
        return self.api.handle(request)

    def _events(self, request: Request) -> Response:
        self._count_request()
        if request.path.rstrip("/") != self.journal.path:
            return gateway_error(404, "404000", "Not found")
        if request.method != "GET":
            return gateway_error(405, "405000", "Method not allowed")
        rejected = check_gateway(request, self.tokens)
        if rejected is not None:
            return rejected
        if request.headers.get("x-ims-org-id") != self.org_id:
            return gateway_error(403, "403003", "The x-ims-org-id header does not match the organization")
        return self.journal.handle(request)
