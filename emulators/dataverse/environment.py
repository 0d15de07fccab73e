"""`Environment`: one Dataverse environment in memory, listening on no port: its tables and rows, the Web
API's handlers, table metadata and webhooks wired together on one clock, the organization's own rows, and
the hooks tests and the demo use to tune webhook delivery and delta answers and to act as a person
(change rows, define tables, import contacts). `DataverseEmulator` serves it."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from . import errors
from . import seed as seeding
from .api import DataApi
from .batch import Batch
from .changes import Caller, ChangeEvent
from .errors import ApiError
from .execution_context import Organization
from .metadata import Metadata
from .payloads import parse_body
from .records import Records
from .representation import Representation, plain_row
from .schema import Schema, Table
from .standard_tables import build_standard_schema
from .steps import validate_endpoint, validate_step
from .store import Clock, Store
from .system_rows import SystemRows, stable_id
from .tables import add_key, add_spec_columns, create_table
from .webhook_tables import regarding_targets_for
from .webhooks import Webhooks


class Environment:
    """Safe to call from any thread; webhooks go out once `webhooks.start()` ran."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        change_token_max_age_seconds: float,
        seed: int,
        webhook_workers: int,
        webhook_max_delay_seconds: float,
        webhook_duplicate_rate: float,
        webhook_row_version: bool,
        empty_delta_response: str,
        charge: Callable[[int], None],  # counts the requests of a `$batch` against service protection
    ) -> None:
        self.clock = Clock()
        self.store = Store()
        self.schema = Schema(self.store.lock)
        build_standard_schema(self.schema)
        self.organization = Organization(
            id=stable_id(tenant_id, "organization"),
            name="EmulatorOrg",
            host="127.0.0.1",
            business_unit_id=stable_id(tenant_id, "businessunit"),
        )
        self.application_user_id = stable_id(tenant_id, client_id, "application-user")
        self.interactive_user_id = stable_id(tenant_id, "interactive-user")
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
        self.api.batch = Batch(self.api, self.records, charge=charge)
        self.records.before_write.update(
            serviceendpoint=validate_endpoint, sdkmessageprocessingstep=validate_step
        )
        self._system_rows = SystemRows(self.store, self.clock, self.application_user_id)
        self._system_rows.add_users(client_id, self.interactive_user_id)
        self._system_rows.add_messages()
        for table in list(self.schema.tables.values()):
            for key in table.keys.values():
                self.store.index_key(table.logical_name, key)
            self._table_created(table)

    # -- knobs for tests ----------------------------------------------------------------------------------

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
            values = parse_body(self.schema, self.store, definition, attrs, caller)
            row_id, _ = self.records.create(definition, values, caller)
        return row_id

    def update_row(self, table: str, row_id: str, attrs: dict[str, Any]) -> None:
        definition, caller = self._table(table), self._ui_caller()
        with self.records.atomic():
            self.records.update(
                definition, row_id, parse_body(self.schema, self.store, definition, attrs, caller), caller
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
            add_spec_columns(self.schema, table, attributes or {})
            for key_name, columns in (alternate_keys or {}).items():
                self.store.index_key(logical_name, add_key(table, key_name, list(columns)))
            self._table_created(table)
        return table

    def _table_created(self, table: Table) -> None:
        """Every data table gets message filters (so steps can be registered) and can be a job's regarding."""
        if table.read_only or table.logical_name.startswith("sdkmessage"):
            return
        regarding_targets_for(self.schema, table)
        self._system_rows.add_message_filters(table)

    def _on_commit(self, events: list[ChangeEvent]) -> None:
        self.webhooks.dispatch(events)
