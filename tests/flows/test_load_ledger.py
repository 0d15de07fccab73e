"""An initial load's ledger rows are created per page in Table transactions; the last page's while its
records are still being written, so that few are left for after its last record."""

from __future__ import annotations

import threading
import time

from azure.functions.timer import TimerRequest

import contacts_sync
from tests.builders.sync_config import FIRST_NAME, LAST_NAME, contacts_mapping, sync_config


def test_the_last_load_pages_ledger_rows_are_created_while_its_last_records_are_written(
    stack, function_app_env
):
    stack.dataverse.seed_contacts(40, seed=5)
    app = function_app_env(
        sync_config(contacts_mapping(FIRST_NAME, LAST_NAME)), D365_PAGE_SIZE="100", ACS_MAX_CONCURRENCY="1"
    )
    mapping = app.config.tables[0].name
    real_create, lock = app.campaign.create, threading.Lock()
    creates: list[str] = []
    rows_before_late_creates: list[int] = []

    def ledger_rows() -> int:
        return sum(app.store.ledger.count_by_status(mapping).values())

    def create(resource, body):
        with lock:
            creates.append(body["externalId"])
            late = len(creates) > 36
        if late:  # the page's last records wait (10 s at most) for the first half's rows
            deadline = time.monotonic() + 10
            while ledger_rows() < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            rows_before_late_creates.append(ledger_rows())
        return real_create(resource, body)

    app.campaign.create = create
    contacts_sync.main(TimerRequest())
    assert len(creates) == 40 and len(set(creates)) == 40
    assert len(rows_before_late_creates) == 4
    assert min(rows_before_late_creates) >= 20  # created before the page's last records
    assert app.store.ledger.count_by_status(mapping)["synced"] == 40
