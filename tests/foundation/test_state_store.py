from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.credentials import AccessToken
from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer, drop_connection
from shared.http import new_session
from shared.store import CheckpointConflict, LedgerConflict, LedgerRecord, RecordStatus, RunReport
from shared.store.keys import decode_key, encode_key
from shared.store.ledger import SHARDS, partition_key
from shared.store.state import STORAGE_CONNECTION_RETRY, StateStore

AWKWARD_IDS = ["a/b\\c#d?e", "tab\there", "quote'in", "percent%25", "ünïcødé-✓", "~tilde~", "x" * 2000]


@pytest.mark.parametrize("value", AWKWARD_IDS[:-1])
def test_key_encoding_removes_forbidden_characters_and_round_trips(value):
    encoded = encode_key(value)
    assert not set(encoded) & set("/\\#?\t'%")
    assert decode_key(encoded) == value


def test_over_long_keys_are_shortened_with_a_hash_and_stay_distinct():
    a, b = encode_key("x" * 2000), encode_key("x" * 1999 + "y")
    assert len(a) <= 512 and a != b


def test_a_missing_checkpoint_reads_as_empty(state_store):
    checkpoint = state_store.checkpoints.get("contacts_sync", "contacts")
    assert checkpoint.position is None and checkpoint.etag is None


def test_a_checkpoint_advances_and_reads_back(state_store):
    store = state_store.checkpoints
    first = store.put(store.get("contacts_sync", "contacts"), "https://x/contacts?$skiptoken=1", {"pages": 1})
    second = store.put(first, "https://x/contacts?$deltatoken=9%2112", {"initial_done": True})
    saved = store.get("contacts_sync", "contacts")
    assert saved.position == "https://x/contacts?$deltatoken=9%2112"
    assert saved.data == {"pages": 1, "initial_done": True}
    assert saved.etag == second.etag


def test_two_writers_racing_on_one_checkpoint_exactly_one_wins(state_store):
    store = state_store.checkpoints
    base = store.put(store.get("events_push", "journal"), "position-1")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def writer(position: str) -> None:
        barrier.wait()
        try:
            store.put(base, position)
            outcomes.append("won")
        except CheckpointConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("position-2a", "position-2b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "won"]
    assert store.get("events_push", "journal").position in {"position-2a", "position-2b"}


def test_two_first_runs_creating_one_checkpoint_conflict_too(state_store):
    store = state_store.checkpoints
    empty = store.get("contacts_sync", "vehicles")
    store.put(empty, "a")
    with pytest.raises(CheckpointConflict, match="contacts_sync/vehicles was changed by another run"):
        store.put(empty, "b")


def test_checkpoint_keys_with_forbidden_characters_work(state_store):
    store = state_store.checkpoints
    store.put(store.get("flow/with#odd?chars", "stream\\x"), "p")
    assert store.get("flow/with#odd?chars", "stream\\x").position == "p"
    assert [c.stream for c in store.list("flow/with#odd?chars")] == ["stream\\x"]


def test_a_checkpoint_reset_starts_the_stream_over(state_store):
    store = state_store.checkpoints
    store.put(store.get("contacts_sync", "contacts"), "delta")
    store.reset("contacts_sync", "contacts")
    assert store.get("contacts_sync", "contacts").position is None


def test_ledger_records_round_trip_with_big_versions_and_awkward_ids(state_store):
    ledger = state_store.ledger
    for source_id in AWKWARD_IDS:
        ledger.save(
            LedgerRecord(
                "contacts",
                source_id,
                source_version=2**40 + 7,
                content_hash="h",
                target_key="@pkey",
                extra={"blackListEmail": True},
            )
        )
    for source_id in AWKWARD_IDS[:-1]:
        record = ledger.get("contacts", source_id)
        assert record.source_version == 2**40 + 7
        assert record.target_key == "@pkey" and record.extra == {"blackListEmail": True}
        assert record.source_id == source_id


def test_a_stale_ledger_write_is_refused(state_store):
    ledger = state_store.ledger
    saved = ledger.save(LedgerRecord("contacts", "c1", source_version=1))
    ledger.save(saved.evolve(source_version=2))
    with pytest.raises(LedgerConflict):
        ledger.save(saved.evolve(source_version=3))
    with pytest.raises(LedgerConflict):
        ledger.save(LedgerRecord("contacts", "c1", source_version=4))
    assert ledger.get("contacts", "c1").source_version == 2


def test_ledger_counts_by_status_and_finds_failed_records_due_for_retry(state_store):
    ledger = state_store.ledger
    now = datetime.now(UTC)
    statuses = [RecordStatus.SYNCED] * 5 + [RecordStatus.EXCLUDED] * 2
    for i, status in enumerate(statuses):
        ledger.save(LedgerRecord("contacts", f"s{i}", status=status))
    ledger.save(
        LedgerRecord(
            "contacts",
            "due",
            status=RecordStatus.FAILED,
            attempts=2,
            next_attempt_at=now - timedelta(minutes=1),
        )
    )
    ledger.save(
        LedgerRecord(
            "contacts",
            "later",
            status=RecordStatus.FAILED,
            attempts=1,
            next_attempt_at=now + timedelta(hours=1),
        )
    )
    ledger.save(LedgerRecord("vehicles", "other", status=RecordStatus.FAILED, next_attempt_at=now))
    counts = ledger.count_by_status("contacts")
    assert counts == {"synced": 5, "excluded": 2, "failed": 2, "deleted": 0, "dead": 0, "writing": 0}
    assert [r.source_id for r in ledger.due_for_retry("contacts", now=now)] == ["due"]
    assert {r.source_id for r in ledger.iter_records("contacts", status=RecordStatus.FAILED)} == {
        "due",
        "later",
    }


def test_a_mappings_rows_spread_over_shards_and_its_queries_see_no_other_mapping(state_store):
    ledger = state_store.ledger
    ids = [f"c{i}" for i in range(200)]
    for source_id in ids:
        ledger.save(LedgerRecord("contacts", source_id))
    # Names that share the prefix or sort right next to the shard range.
    for neighbour in ("contacts2", "contact", "contacts|00", "contacts}"):
        ledger.save(
            LedgerRecord(neighbour, "c1", status=RecordStatus.FAILED, next_attempt_at=datetime.now(UTC))
        )
    partitions = {partition_key("contacts", source_id) for source_id in ids}
    assert len(partitions) == SHARDS
    assert sorted(r.source_id for r in ledger.iter_records("contacts")) == sorted(ids)
    assert ledger.count_by_status("contacts")["synced"] == 200
    assert ledger.count_by_status("contacts")["failed"] == 0
    assert list(ledger.due_for_retry("contacts")) == []
    assert ledger.get("contacts|00", "c1").mapping == "contacts|00"
    assert not ledger.is_empty("contacts}") and ledger.is_empty("contacts3")


def test_creating_many_rows_writes_them_in_transactions_and_leaves_rows_written_meanwhile(state_store):
    ledger = state_store.ledger
    first = ledger.save(LedgerRecord("contacts", "c7", source_version=9, target_key="@theirs"))
    records = [LedgerRecord("contacts", f"c{i}", source_version=1, target_key=f"@{i}") for i in range(450)]
    existing = ledger.create_many(records)
    assert [r.source_id for r in existing] == ["c7"]
    assert ledger.get("contacts", "c7").etag == first.etag  # untouched
    assert ledger.get("contacts", "c449").target_key == "@449"
    assert ledger.count_by_status("contacts")["synced"] == 450


def test_create_many_sets_aside_each_row_another_writer_created_and_creates_all_the_others(state_store):
    ledger = state_store.ledger
    theirs = {f"c{i}" for i in range(0, 450, 7)}  # a few rows in the way in every transaction
    etags = {i: ledger.save(LedgerRecord("contacts", i, target_key="@theirs")).etag for i in theirs}
    records = [LedgerRecord("contacts", f"c{i}", source_version=1, target_key=f"@{i}") for i in range(450)]
    existing = ledger.create_many(records)
    assert {r.source_id for r in existing} == theirs
    assert all(ledger.get("contacts", i).etag == etag for i, etag in etags.items())  # untouched
    assert ledger.get("contacts", "c449").target_key == "@449"
    assert ledger.count_by_status("contacts")["synced"] == 450


def test_dead_letters_keep_payload_error_and_attempt_history(state_store):
    letters = state_store.deadletters
    letters.put(
        flow="contacts_sync",
        mapping="contacts",
        record_id="c/1",
        payload={"email": "bad"},
        error={"type": "RequestRejectedError", "code": "RST-360011", "message": "invalid email"},
    )
    letters.put(
        flow="contacts_sync",
        mapping="contacts",
        record_id="c/1",
        payload={"email": "bad2"},
        error={"type": "RequestRejectedError", "code": "RST-360011", "message": "still invalid"},
        correlation_id="corr-1",
    )
    letters.put(flow="events_push", mapping="events", record_id="e1", error={"message": "no contact"})
    letter = letters.get("contacts_sync", "contacts", "c/1")
    assert letter.payload == {"email": "bad2"} and letter.error["message"] == "still invalid"
    assert [a["message"] for a in letter.attempts] == ["invalid email", "still invalid"]
    assert letter.correlation_id == "corr-1"
    assert [d.record_id for d in letters.iter_letters(flow="contacts_sync")] == ["c/1"]
    assert letters.count() == 2 and letters.count(flow="events_push") == 1


def test_a_replayed_dead_letter_is_removed(state_store):
    letters = state_store.deadletters
    letters.put(flow="contacts_sync", mapping="contacts", record_id="c2", error={"message": "x"})
    assert letters.remove("contacts_sync", "contacts", "c2") is True
    assert letters.remove("contacts_sync", "contacts", "c2") is False
    assert letters.get("contacts_sync", "contacts", "c2") is None


def test_run_reports_are_kept_per_run_with_the_latest_readable_directly(state_store):
    reports = state_store.reports
    first = RunReport("contacts_sync")
    first.count("upserted", 3)
    first.error(record="c1", message="boom")
    reports.save(first.finish("partial"))
    second = RunReport("contacts_sync")
    second.count("upserted", 1)
    name = reports.save(second.finish("succeeded"))
    latest = reports.latest("contacts_sync")
    assert latest["run_id"] == second.run_id and latest["outcome"] == "succeeded"
    assert latest["counts"] == {"upserted": 1}
    assert name.startswith("runs/contacts_sync/")
    assert reports.latest("events_push") is None


def test_a_storage_post_whose_connection_is_dropped_is_sent_again():
    attempts = []

    @Request.application
    def drops_the_first_post(request: Request) -> Response:
        attempts.append(request.get_data())
        return drop_connection(request.environ) if len(attempts) == 1 else Response("{}", status=201)

    session = new_session(max_retries=STORAGE_CONNECTION_RETRY)
    with EmulatorServer(drops_the_first_post) as server:
        answer = session.post(f"{server.base_url}/Tables", data=b'{"TableName": "t"}', timeout=5)
    assert answer.status_code == 201
    assert attempts == [b'{"TableName": "t"}'] * 2


class _StaticToken:
    """A managed identity's credential, as far as building the clients needs one (no token is asked)."""

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken("token", 2**31)


def _requests_session(table_client):
    # The SDK keeps its transport privately (TableClient → generated client → pipeline → wrapper).
    return table_client._client._client._pipeline._transport._transport.session


@pytest.mark.parametrize("identity", ["connection string", "managed identity"])
def test_the_ledger_uses_the_pooled_transport_that_resends_a_dropped_post_however_it_authenticates(
    identity, azurite
):
    if identity == "connection string":
        store = StateStore.connect(connection_string=azurite.connection_string, create=False)
    else:
        store = StateStore.connect(account_name="customer", credential=_StaticToken(), create=False)
    adapter = _requests_session(store.ledger._table).get_adapter("https://customer.table.core.windows.net")
    assert adapter._pool_maxsize == 32
    assert adapter.max_retries is STORAGE_CONNECTION_RETRY
