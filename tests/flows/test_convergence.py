"""Convergence under real delivery conditions: Dataverse's webhook jobs arrive concurrently, out of order
and twice, on two host processes, while Campaign answers slowly; delta tokens expire with creates,
updates and deletes in the gap; a writer dies holding a record. Every case must end with Campaign equal
to Dynamics and a ledger that claims only what Campaign holds."""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer, FaultConfig
from emulators.processes import HostProcess
from shared.app import App
from shared.flows.ingress import Mode
from shared.settings import load_settings
from shared.store import RecordStatus
from tests.builders.sync_config import CITY, FIRST_NAME, LAST_NAME, cli, contacts_mapping, sync_config

CONFIG = sync_config(contacts_mapping(FIRST_NAME, LAST_NAME, CITY, apply_deletes=True))
VERSIONS = 3


class Capture:
    """Stands where the webhook would be: records every delivery (headers and body) and answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self.server = EmulatorServer(self.app).start()

    @Request.application
    def app(self, request: Request) -> Response:
        headers = {
            k: v for k, v in request.headers.items() if k.lower().startswith(("x-ms-", "content-type"))
        }
        with self._lock:
            self.deliveries.append((headers, request.get_data()))
        return Response(status=200)


@pytest.fixture
def capture():
    receiver = Capture()
    yield receiver
    receiver.server.stop()


@pytest.fixture
def settings(stack) -> dict[str, str]:
    """One set of app settings for this process and the hosts: the same state storage for all."""
    return stack.app_settings(sync_config=CONFIG)


@pytest.fixture
def app(settings) -> App:
    return App(load_settings(settings))


@pytest.fixture
def hosts(settings, tmp_path):
    with (
        HostProcess(settings, tmp_path, name="a") as first,
        HostProcess(settings, tmp_path, name="b") as second,
    ):
        yield [first, second]


def expected(dataverse) -> dict[str, tuple]:
    return {
        row["contactid"].lower(): (row.get("firstname"), row.get("lastname"), row.get("address1_city") or "")
        for row in dataverse.rows("contact")
    }


def actual(campaign) -> dict[str, tuple]:
    profiles = campaign.snapshot("profile")
    keys = [p["externalId"] for p in profiles]
    assert len(keys) == len(set(keys)), "a contact has two profiles"
    return {
        p["externalId"]: (p.get("firstName"), p.get("lastName"), (p.get("location") or {}).get("city") or "")
        for p in profiles
    }


def assert_converged(stack, app) -> None:
    """Campaign equals Dynamics, and every ledger row claims the row's current version and content."""
    want, have = expected(stack.dataverse), actual(stack.campaign)
    wrong = {
        key: (want.get(key), have.get(key))
        for key in want.keys() | have.keys()
        if want.get(key) != have.get(key)
    }
    assert not wrong, (
        f"{len(wrong)} of {len(want)} records differ (Dynamics, Campaign), e.g. {list(wrong.items())[:3]}"
    )
    for row in stack.dataverse.rows("contact"):
        entry = app.store.ledger.get("contacts", row["contactid"].lower())
        assert entry.status == RecordStatus.SYNCED and not entry.recheck and entry.lease is None
        assert entry.source_version in (None, int(row["versionnumber"])), "the ledger claims an old version"


def edit_every_contact(stack, ids: list[str], versions: int, rng: random.Random) -> None:
    """`versions` updates of each contact, interleaved across contacts as users would make them."""
    edits = [(contact_id, n) for n in range(1, versions + 1) for contact_id in ids]
    for contact_id, n in edits:
        stack.dataverse.update_row(
            "contact",
            contact_id,
            {"firstname": f"v{n}-{rng.randrange(1000)}", "lastname": f"Last{n}", "address1_city": f"City{n}"},
        )


def deliver(deliveries, hosts, rng: random.Random, *, threads: int = 32) -> list[int]:
    """Post the captured deliveries to the hosts at once, in a shuffled order, a tenth of them twice, each
    to a host picked at random: what Dataverse's asynchronous service does on several instances."""
    jobs = list(deliveries) + rng.sample(list(deliveries), len(deliveries) // 10)
    rng.shuffle(jobs)
    targets = [rng.choice(hosts) for _ in jobs]

    def post(job, host) -> int:
        headers, body = job
        return requests.post(host.webhook_url, data=body, headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, jobs, targets))


def without_versions(body: bytes) -> bytes:
    """The same delivery as the published capture has it: RowVersion null, no versionnumber anywhere."""
    context = json.loads(body)
    entities = [pair["value"] for pair in context.get("InputParameters", []) if pair["key"] == "Target"]
    entities += [pair["value"] for pair in context.get("PostEntityImages", [])]
    for entity in entities:
        entity["RowVersion"] = None
        entity["Attributes"] = [a for a in entity["Attributes"] if a["key"] != "versionnumber"]
    return json.dumps(context).encode()


def capture_changes(stack, app, capture, seed: int) -> list[tuple[dict[str, str], bytes]]:
    """40 contacts loaded, the webhook registered by `d365 setup`, then three versions of each contact:
    answers the 120 deliveries Dataverse made."""
    ids = stack.dataverse.seed_contacts(40, seed=seed)
    app.ingress.run()
    code, out = cli(
        app,
        "d365",
        "setup",
        "--webhook-url",
        capture.server.base_url + "/api/webhook_d365",
        "--function-key=k",
    )
    assert code == 0, out
    edit_every_contact(stack, ids, VERSIONS, random.Random(seed))
    assert stack.dataverse.wait_for_deliveries(timeout=60)
    assert len(capture.deliveries) == 40 * VERSIONS
    return capture.deliveries


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_concurrent_out_of_order_deliveries_on_two_hosts_end_equal_to_dynamics_without_a_sweep(
    stack, app, capture, hosts, seed
):
    deliveries = capture_changes(stack, app, capture, seed)
    stack.campaign.faults.configure(FaultConfig(latency_ms=40, latency_jitter_ms=30, seed=seed))
    statuses = deliver(deliveries, hosts, random.Random(seed))
    assert all(200 <= status < 300 for status in statuses), statuses
    assert_converged(stack, app)


def test_deliveries_without_any_version_end_equal_after_one_sweep_at_most(stack, app, capture, hosts):
    deliveries = [
        (headers, without_versions(body)) for headers, body in capture_changes(stack, app, capture, 4)
    ]
    assert b'"RowVersion": null' in deliveries[0][1] and b"versionnumber" not in deliveries[0][1]
    stack.campaign.faults.configure(FaultConfig(latency_ms=40, latency_jitter_ms=30, seed=4))
    statuses = deliver(deliveries, hosts, random.Random(4))
    assert all(200 <= status < 300 for status in statuses), statuses
    app.ingress.run()  # the change-tracking sweep, once
    assert_converged(stack, app)


def test_a_token_expiry_with_creates_updates_and_deletes_in_the_gap_ends_equal(stack, app):
    ids = stack.dataverse.seed_contacts(300, seed=5)
    app.ingress.run()
    for contact_id in ids[:30]:
        stack.dataverse.update_row("contact", contact_id, {"lastname": "InTheGap"})
    for contact_id in ids[30:80]:
        stack.dataverse.delete_row("contact", contact_id)
    created = [
        stack.dataverse.create_row("contact", {"firstname": f"New{n}", "lastname": "Gap"}) for n in range(20)
    ]
    stack.dataverse.advance_time(8 * 86400)  # past the organisation's 7-day change-tracking retention
    stack.campaign.reset_counters()

    report = app.ingress.run()

    assert report.counts["resyncs"] == 1
    assert report.counts["sweep_deleted"] == 50, report.counts
    assert_converged(stack, app)
    calls = stack.campaign.engine_calls
    assert (calls["insert"], calls["update"], calls["delete"]) == (20, 30, 50)
    assert all(app.store.ledger.get("contacts", i.lower()).status == RecordStatus.SYNCED for i in created)
    assert app.store.checkpoints.get("contacts_sync", "contacts").data["sweep_due"] is None
    stack.campaign.reset_counters()
    assert app.ingress.run().counts["sweep_deleted"] == 0  # the sweep is done: nothing is read again


def test_a_replay_deletes_what_dynamics_lost_without_telling_us(stack, app):
    ids = stack.dataverse.seed_contacts(60, seed=6)
    app.ingress.run()
    gone = ids[:5]
    for contact_id in gone:  # a replay reads everything again instead of the changes: it never sees these
        stack.dataverse.delete_row("contact", contact_id)
    app.ingress.request_replay("contacts")
    report = app.ingress.run()
    assert report.counts["sweep_deleted"] == 5
    assert set(actual(stack.campaign)) == set(expected(stack.dataverse))


def test_a_writer_that_died_holding_a_record_is_repaired_by_the_next_timer_run(stack, app):
    contact_id = stack.dataverse.seed_contacts(3, seed=7)[0].lower()
    app.ingress.run()
    stack.dataverse.update_row("contact", contact_id, {"firstname": "AfterTheCrash"})
    entry = app.store.ledger.get("contacts", contact_id)
    # A writer took the lease, wrote something older to Campaign, and died: its lease has run out.
    app.store.ledger.save(
        entry.evolve(
            status=RecordStatus.WRITING,
            lease="dead-writer",
            next_attempt_at=datetime.now(UTC) - timedelta(seconds=1),
        )
    )
    stack.campaign.update_profile(entry.target_key, {"firstName": "HalfWritten"})
    app.ingress.run()
    assert_converged(stack, app)


def test_a_change_handed_to_the_lease_holder_is_applied_before_it_lets_go(stack, app):
    contact_id = stack.dataverse.seed_contacts(2, seed=8)[0].lower()
    app.ingress.run()
    ctx = app.ingress.context(app.config.mapping("contacts"))
    writer = app.ingress.writer
    entered, release = threading.Event(), threading.Event()
    patch = writer.campaign.patch

    def slow_patch(resource, pkey, body):
        entered.set()
        assert release.wait(30)
        return patch(resource, pkey, body)

    stack.dataverse.update_row("contact", contact_id, {"firstname": "First"})
    writer.campaign.patch = slow_patch
    holder = threading.Thread(target=writer.resync, args=(ctx, contact_id))
    holder.start()
    assert entered.wait(30)
    writer.campaign.patch = patch
    stack.dataverse.update_row("contact", contact_id, {"firstname": "Second"})
    assert writer.resync(ctx, contact_id, mode=Mode.RETRY) == "handed_off"
    release.set()
    holder.join(30)
    assert_converged(stack, app)


def test_every_documented_answer_to_an_empty_delta_keeps_the_token_and_never_reloads(stack, app):
    ids = stack.dataverse.seed_contacts(20, seed=9)
    app.ingress.run()
    stack.dataverse.empty_delta_response = "rotate"  # new deltaLink, none, then `{}`, and again
    for _ in range(4):
        stack.campaign.reset_counters()
        report = app.ingress.run()
        assert report.outcome == "succeeded" and report.counts["resyncs"] == 0
        assert sum(stack.campaign.engine_calls.values()) == 0  # no full load: not even its probe
    assert app.store.checkpoints.get("contacts_sync", "contacts").data["mode"] == "delta"
    stack.dataverse.update_row("contact", ids[0], {"lastname": "AfterQuietRuns"})
    app.ingress.run()
    assert_converged(stack, app)
