"""`DataverseEmulator`: an in-process Dataverse organization (Web API, Entra ID token endpoint, webhooks)
served over TLS on a free loopback port, with hooks for tests and the demo."""

from __future__ import annotations

import os
import random
import ssl
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import trustme

from emulators.common import EmulatorServer, FaultConfig, FaultInjector, ServerLimit

from . import errors
from . import seed as seeding
from .api import DataApi
from .app import API_PREFIX, Router
from .batch import Batch
from .errors import ApiError
from .execution_context import Organization
from .identity import Identity
from .metadata import Metadata
from .records import Caller, ChangeEvent, Records
from .representation import Representation, plain_row
from .schema import (
    BIGINT,
    BOOLEAN,
    DATETIME,
    DECIMAL,
    DOUBLE,
    INTEGER,
    LOOKUP,
    MEMO,
    MONEY,
    MULTISELECT,
    PICKLIST,
    STRING,
    UNIQUEIDENTIFIER,
    Attribute,
    Schema,
    Table,
    boolean,
    picklist,
)
from .standard_tables import build_standard_schema
from .steps import MESSAGE_IDS, validate_endpoint, validate_step
from .store import Clock, Store
from .tables import add_key, create_table, lookup
from .webhook_tables import regarding_targets_for
from .webhooks import Webhooks

DEFAULT_TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"
_NS = uuid.UUID("1b671a64-40d5-491e-99b0-da01ff1f3341")
_SPEC_TYPES = {
    "String": STRING,
    "Memo": MEMO,
    "Integer": INTEGER,
    "BigInt": BIGINT,
    "Decimal": DECIMAL,
    "Double": DOUBLE,
    "Money": MONEY,
    "Boolean": BOOLEAN,
    "DateTime": DATETIME,
    "Date": DATETIME,
    "Picklist": PICKLIST,
    "MultiSelectPicklist": MULTISELECT,
    "Lookup": LOOKUP,
    "Uniqueidentifier": UNIQUEIDENTIFIER,
}


def _stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


class DataverseEmulator:
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
        self.clock = Clock()
        self.store = Store()
        self.schema = Schema(self.store.lock)
        build_standard_schema(self.schema)
        self.faults = FaultInjector(faults)
        self.limit = ServerLimit(
            max_requests=max_requests, window_seconds=window_seconds, max_concurrency=max_concurrency
        )
        self.identity = Identity(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            lifetime_seconds=token_lifetime_seconds,
            clock=lambda: time.monotonic() + self.clock.offset.total_seconds(),
        )
        self.organization = Organization(
            id=_stable_id(tenant_id, "organization"),
            name="EmulatorOrg",
            host="127.0.0.1",
            business_unit_id=_stable_id(tenant_id, "businessunit"),
        )
        self.application_user_id = _stable_id(tenant_id, client_id, "application-user")
        self.interactive_user_id = _stable_id(tenant_id, "interactive-user")
        self.records = Records(self.schema, self.store, self.clock, on_commit=self._on_commit)
        self.representation = Representation(self.schema, self.store)
        self.webhooks = Webhooks(
            self.schema,
            self.store,
            self.records,
            self.representation,
            self.clock,
            self.organization,
            workers=webhook_workers,
            max_delay_seconds=webhook_max_delay_seconds,
            duplicate_rate=webhook_duplicate_rate,
            row_version=webhook_row_version,
            seed=seed,
        )
        self.metadata = Metadata(self.schema, self.store, on_table_created=self._table_created)
        self.api = DataApi(
            self.schema,
            self.store,
            self.records,
            self.representation,
            self.metadata,
            self.clock,
            self.organization.id,
            self.organization.business_unit_id,
        )
        self.api.change_token_max_age_seconds = change_token_max_age_seconds
        self.api.empty_delta_response = empty_delta_response
        self.api.batch = Batch(self.api, self.records, charge=self.limit.charge)
        self.records.before_write.update(
            serviceendpoint=validate_endpoint, sdkmessageprocessingstep=validate_step
        )
        self._request_count = 0
        self._count_lock = threading.Lock()
        self._server: EmulatorServer | None = None
        self._ca_path: str | None = None
        self._base_url: str | None = None
        self._system_rows(client_id)
        for table in list(self.schema.tables.values()):
            for key in table.keys.values():
                self.store.index_key(table.logical_name, key)
            self._table_created(table)
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

    # -- knobs and counters for tests ---------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        return self._request_count

    def count_request(self) -> None:
        with self._count_lock:
            self._request_count += 1

    @property
    def webhook_duplicate_rate(self) -> float:
        return self.webhooks.duplicate_rate

    @webhook_duplicate_rate.setter
    def webhook_duplicate_rate(self, rate: float) -> None:
        self.webhooks.duplicate_rate = rate

    @property
    def webhook_workers(self) -> int:
        """How many async webhook deliveries are in flight at once (default 4; can change while running)."""
        return self.webhooks.workers

    @webhook_workers.setter
    def webhook_workers(self, workers: int) -> None:
        self.webhooks.workers = workers

    @property
    def webhook_max_delay_seconds(self) -> float:
        """Each async job waits a random time in [0, this] before it is sent (default 0), so jobs for
        one row overtake each other, like system jobs run in parallel by several servers."""
        return self.webhooks.max_delay_seconds

    @webhook_max_delay_seconds.setter
    def webhook_max_delay_seconds(self, seconds: float) -> None:
        self.webhooks.max_delay_seconds = seconds

    @property
    def webhook_row_version(self) -> bool:
        """True (default): Create/Update Targets and images carry the operation's version as `RowVersion`
        (a string); False: every `RowVersion` is null, as in Microsoft's published sample."""
        return self.webhooks.contexts.row_version

    @webhook_row_version.setter
    def webhook_row_version(self, enabled: bool) -> None:
        self.webhooks.contexts.row_version = enabled

    @property
    def empty_delta_response(self) -> str:
        """The answer to a change-tracking delta with no changes: "deltalink" (a new deltaLink and an empty
        value, the default), "no_deltalink" (an empty value, no deltaLink), "empty_object" (`{}`) or
        "rotate" (cycles through the three)."""
        return self.api.empty_delta_response

    @empty_delta_response.setter
    def empty_delta_response(self, mode: str) -> None:
        self.api.empty_delta_response = mode

    @property
    def webhook_retry_delay_seconds(self) -> float:
        return self.webhooks.sender.retry_delay_seconds

    @webhook_retry_delay_seconds.setter
    def webhook_retry_delay_seconds(self, seconds: float) -> None:
        self.webhooks.sender.retry_delay_seconds = seconds

    @property
    def webhook_timeout_seconds(self) -> float:
        return self.webhooks.sender.timeout_seconds

    @webhook_timeout_seconds.setter
    def webhook_timeout_seconds(self, seconds: float) -> None:
        self.webhooks.sender.timeout_seconds = seconds

    @property
    def change_token_max_age_seconds(self) -> float:
        return self.api.change_token_max_age_seconds

    @change_token_max_age_seconds.setter
    def change_token_max_age_seconds(self, seconds: float) -> None:
        self.api.change_token_max_age_seconds = seconds

    def advance_time(self, seconds: float) -> None:
        """Move the organization's clock: timestamps, change-token age and bearer-token expiry."""
        self.clock.offset += timedelta(seconds=seconds)

    def wait_for_deliveries(self, timeout: float = 10) -> bool:
        return self.webhooks.wait(timeout)

    def stats(self) -> dict:
        return {
            "request_count": self.request_count,
            "tokens_issued": self.identity.issued,
            "limit": {"peak_in_flight": self.limit.peak_in_flight, "rejected": dict(self.limit.rejected)},
            "faults": dict(self.faults.counts),
            "webhooks": self.webhooks.stats.as_dict(),
            "rows": {name: self.store.count(name) for name in ("contact", "account")},
        }

    # -- rows as a user would change them -----------------------------------------------------------------

    def _table(self, logical_name: str) -> Table:
        table = self.schema.tables.get(logical_name)
        if table is None:
            raise ApiError(404, errors.NOT_FOUND, f"The table '{logical_name}' does not exist.")
        return table

    def _ui_caller(self) -> Caller:
        return Caller(self.interactive_user_id)

    def create_row(self, table: str, attrs: dict[str, Any]) -> str:
        """Create a row (Web API body shape: columns and `<nav>@odata.bind`); fires webhooks."""
        definition, caller = self._table(table), self._ui_caller()
        with self.records.atomic():
            values = self.records.parse_body(definition, attrs, caller)
            row_id, _ = self.records.create(definition, values, caller)
        return row_id

    def update_row(self, table: str, row_id: str, attrs: dict[str, Any]) -> None:
        definition, caller = self._table(table), self._ui_caller()
        with self.records.atomic():
            self.records.update(
                definition, row_id, self.records.parse_body(definition, attrs, caller), caller
            )

    def delete_row(self, table: str, row_id: str) -> None:
        self.records.delete(self._table(table), row_id, self._ui_caller())

    def get_row(self, table: str, row_id: str) -> dict | None:
        """A row as plain values: every readable column by logical name, lookups as the referenced id."""
        definition = self._table(table)
        with self.store.lock:
            row = self.store.get(table, row_id)
            return plain_row(definition, row) if row is not None else None

    def rows(self, table: str) -> list[dict]:
        """Every row of a table, like `get_row` (a snapshot list, so `len()` works)."""
        definition = self._table(table)
        with self.store.lock:
            return [plain_row(definition, row) for _, row in self.store.scan(table)]

    def system_jobs(self) -> list[dict]:
        return self.rows("asyncoperation")

    def seed_contacts(self, n: int, *, seed: int = 1) -> list[str]:
        """Bulk-import realistic contacts (and accounts for ~40% of them): change tracking sees them,
        webhooks do not fire."""
        rng = random.Random(f"{seed}:{self.store.count('contact')}")
        owner = ("systemuser", self.interactive_user_id)
        now = self.clock.now()
        account_rows = seeding.accounts(max(1, n // 25), rng, now, owner) if n else []
        contact_rows = seeding.contacts(n, rng, now, owner, [i for i, _ in account_rows])
        self.store.bulk_insert("account", account_rows)
        self.store.bulk_insert("contact", contact_rows)
        return [i for i, _ in contact_rows]

    # -- tables -------------------------------------------------------------------------------------------

    def define_table(
        self,
        logical_name: str,
        *,
        entity_set: str | None = None,
        primary_id: str | None = None,
        primary_name: str = "name",
        attributes: dict[str, Any] | None = None,
        change_tracking: bool = True,
        is_activity: bool = False,
        alternate_keys: dict[str, list[str]] | None = None,
    ) -> Table:
        """Add a custom table at start-up. Column specs: "String", ("String", 200), ("Memo", 1048576),
        "Date", "DateTime", ("Picklist", {1: "A"}), ("Lookup", "contact"), "Integer", "Money", "Boolean"..."""
        with self.schema.lock:
            table = create_table(
                self.schema,
                logical_name,
                entity_set=entity_set,
                primary_id=primary_id,
                primary_name=primary_name,
                change_tracking=change_tracking,
                is_activity=is_activity,
            )
            for name, spec in (attributes or {}).items():
                kind, extra = (spec, None) if isinstance(spec, str) else spec
                if kind == "Lookup":
                    lookup(self.schema, table, name, extra, is_custom=True)
                    continue
                options = []
                if kind == "Boolean":
                    options = boolean()
                elif kind in ("Picklist", "MultiSelectPicklist"):
                    options = picklist(*dict(extra).items())
                table.add(
                    Attribute(
                        name,
                        _SPEC_TYPES[kind],
                        is_custom=True,
                        options=options,
                        date_only=kind == "Date",
                        max_length=extra if kind in ("String", "Memo") else None,
                    )
                )
            for key_name, columns in (alternate_keys or {}).items():
                self.store.index_key(logical_name, add_key(table, key_name, list(columns)))
            self._table_created(table)
        return table

    def _table_created(self, table: Table) -> None:
        """Every data table gets message filters (so steps can be registered) and can be a job's regarding."""
        if table.read_only or table.logical_name.startswith("sdkmessage"):
            return
        regarding_targets_for(self.schema, table)
        rows = []
        for message, message_id in MESSAGE_IDS.items():
            filter_id = _stable_id("filter", table.logical_name, message)
            if self.store.get("sdkmessagefilter", filter_id) is None:
                rows.append(
                    (
                        filter_id,
                        {
                            "sdkmessagefilterid": filter_id,
                            "name": f"{message} of {table.logical_name}",
                            "primaryobjecttypecode": table.logical_name,
                            "secondaryobjecttypecode": "none",
                            "iscustomprocessingstepallowed": True,
                            "sdkmessageid": ("sdkmessage", message_id),
                            **self._stamp(),
                        },
                    )
                )
        self.store.bulk_insert("sdkmessagefilter", rows)

    def _stamp(self) -> dict:
        now, system = self.clock.iso(), ("systemuser", self.application_user_id)
        return {"createdon": now, "modifiedon": now, "createdby": system, "modifiedby": system}

    def _system_rows(self, client_id: str) -> None:
        users = [
            (
                self.application_user_id,
                {
                    "fullname": "# Dataverse Emulator Integration",
                    "applicationid": client_id,
                    "domainname": f"{client_id}@emulator.example.com",
                },
            ),
            (self.interactive_user_id, {"fullname": "Pat Emulator", "domainname": "pat@example.com"}),
        ]
        self.store.bulk_insert(
            "systemuser",
            [
                (user_id, {"systemuserid": user_id, "isdisabled": False, **values, **self._stamp()})
                for user_id, values in users
            ],
        )
        self.store.bulk_insert(
            "sdkmessage",
            [
                (
                    message_id,
                    {"sdkmessageid": message_id, "name": name, "categoryname": "Data", **self._stamp()},
                )
                for name, message_id in MESSAGE_IDS.items()
            ],
        )

    def _on_commit(self, events: list[ChangeEvent]) -> None:
        self.webhooks.dispatch(events)
