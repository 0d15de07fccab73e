"""Wires the stores to Azure Storage: a connection string (Azurite, local dev) or the account name with
managed identity (`DefaultAzureCredential`; in Azure the Function App's user-assigned identity)."""

from __future__ import annotations

from dataclasses import dataclass

import urllib3.util
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.http import new_session
from shared.store.checkpoints import CheckpointStore
from shared.store.deadletters import DeadLetterStore
from shared.store.ledger import RecordLedger
from shared.store.reports import RunReportStore

# The storage SDK retries statuses and connection failures of idempotent requests, but not a POST
# (create, transaction) whose kept-alive connection the service closed as it was sent. Resending one of
# ours is safe: a create that had been applied fails as "exists" and a conditional update as "modified",
# which the stores report as a conflict to decide again on fresh state.
STORAGE_CONNECTION_RETRY = urllib3.util.Retry(
    total=2, connect=2, read=2, status=0, redirect=False, allowed_methods=None, raise_on_status=False
)


def _transport() -> RequestsTransport:
    # Environment proxies read once, not per request (see shared.http.new_session); a pool wide enough
    # for the flows' worker threads.
    session = new_session(pool_size=32, max_retries=STORAGE_CONNECTION_RETRY)
    return RequestsTransport(session=session, session_owner=True, use_env_settings=False)


@dataclass
class StateStore:
    checkpoints: CheckpointStore
    ledger: RecordLedger
    deadletters: DeadLetterStore
    reports: RunReportStore
    # Per-API request budgets shared by the app's instances (`shared.store.budget`); None: not connected.
    budgets: TableClient | None = None

    @classmethod
    def connect(
        cls,
        *,
        connection_string: str | None = None,
        account_name: str | None = None,
        credential=None,
        table_prefix: str = "acsd365",
        container: str = "acsd365-state",
        create: bool = True,
    ) -> StateStore:
        if connection_string:
            tables = TableServiceClient.from_connection_string(connection_string, transport=_transport())
            blobs = BlobServiceClient.from_connection_string(connection_string, transport=_transport())
        elif account_name:
            if credential is None:
                from azure.identity import DefaultAzureCredential  # imported only where used: slow import

                credential = DefaultAzureCredential()
            # The same pooled transport as with a connection string: without it the SDK's default pool
            # (10 connections) drops connections under the flows' 32 workers, and a POST whose kept-alive
            # connection the service closed would not be sent again.
            url = f"https://{account_name}.{{}}.core.windows.net"
            tables = TableServiceClient(url.format("table"), credential=credential, transport=_transport())
            blobs = BlobServiceClient(url.format("blob"), credential=credential, transport=_transport())
        else:
            raise ValueError("need a storage connection string or an account name")
        checkpoints = tables.get_table_client(f"{table_prefix}checkpoints")
        ledger = tables.get_table_client(f"{table_prefix}ledger")
        budgets = tables.get_table_client(f"{table_prefix}budgets")
        blob_container = blobs.get_container_client(container)
        if create:
            for table in (checkpoints, ledger, budgets):
                try:
                    table.create_table()
                except ResourceExistsError:
                    pass
            try:
                blob_container.create_container()
            except ResourceExistsError:
                pass
        return cls(
            checkpoints=CheckpointStore(checkpoints),
            ledger=RecordLedger(ledger),
            deadletters=DeadLetterStore(blob_container),
            reports=RunReportStore(blob_container),
            budgets=budgets,
        )

    @classmethod
    def from_settings(cls, settings) -> StateStore:
        secret = settings.state_storage_connection_string
        return cls.connect(
            connection_string=secret.get_secret_value() if secret else None,
            account_name=settings.state_storage_account_name,
            table_prefix=settings.state_table_prefix,
            container=settings.state_container,
        )
