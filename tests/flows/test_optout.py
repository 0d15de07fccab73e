"""Opt-out sync end to end, in every direction, through the contacts_sync and optout_sync entry points."""

from __future__ import annotations

import threading

import pytest
from azure.functions.timer import TimerRequest

import contacts_sync
import optout_sync
from emulators.common import FaultConfig
from tests.builders.sync_config import FIRST_NAME, LAST_NAME, contacts_mapping, sync_config

PAIRS = [{"d365": "donotemail", "acs": "blackListEmail"}, {"d365": "donotphone", "acs": "blackListPhone"}]


def config(direction: str) -> dict:
    return sync_config(
        contacts_mapping(FIRST_NAME, LAST_NAME), optout={"direction": direction, "pairs": PAIRS}
    )


def run(function) -> None:
    function.main(TimerRequest())


def profile(stack, contact_id: str) -> dict:
    return next(p for p in stack.campaign.snapshot("profile") if p["externalId"] == contact_id.lower())


def flags(stack, contact_id: str) -> tuple[dict, dict]:
    row = stack.dataverse.get_row("contact", contact_id)
    campaign = profile(stack, contact_id)
    return (
        {name: bool(row[name]) for name in ("donotemail", "donotphone", "donotfax")},
        {name: bool(campaign[name]) for name in ("blackListEmail", "blackListPhone", "blackListFax")},
    )


def seeded(stack, n: int, **flags_by_default) -> list[str]:
    ids = stack.dataverse.seed_contacts(n, seed=21)
    for contact_id in ids:
        stack.dataverse.update_row(
            "contact",
            contact_id,
            {"donotemail": False, "donotphone": False, "donotfax": False, **flags_by_default},
        )
    return ids


def test_dynamics_to_campaign_moves_only_the_paired_flags(stack, function_app_env):
    ids = seeded(stack, 10)
    function_app_env(config("d365_to_acs"))
    run(contacts_sync)
    stack.dataverse.update_row("contact", ids[0], {"donotemail": True, "donotfax": True})
    run(contacts_sync)
    dynamics, campaign = flags(stack, ids[0])
    assert campaign == {"blackListEmail": True, "blackListPhone": False, "blackListFax": False}
    assert dynamics == {"donotemail": True, "donotphone": False, "donotfax": True}
    assert flags(stack, ids[1])[1] == {
        "blackListEmail": False,
        "blackListPhone": False,
        "blackListFax": False,
    }


def test_campaign_to_dynamics_moves_only_the_paired_flags_within_one_run(stack, function_app_env):
    ids = seeded(stack, 10)
    app = function_app_env(config("acs_to_d365"))
    run(contacts_sync)
    stack.campaign.update_profile(
        profile(stack, ids[2])["PKey"],
        {"blackListPhone": True, "blackListFax": True, "firstName": "Campaign"},
    )
    run(optout_sync)
    dynamics, _ = flags(stack, ids[2])
    assert dynamics == {"donotemail": False, "donotphone": True, "donotfax": False}
    assert stack.dataverse.get_row("contact", ids[2])["firstname"] != "Campaign"
    assert app.store.reports.latest("optout_sync")["counts"]["dynamics_updated"] == 1


def test_a_new_profile_starts_with_dynamics_flags_even_one_way_from_campaign(stack, function_app_env):
    ids = seeded(stack, 3, donotemail=True)
    function_app_env(config("acs_to_d365"))
    run(contacts_sync)
    run(optout_sync)
    assert flags(stack, ids[0]) == (
        {"donotemail": True, "donotphone": False, "donotfax": False},
        {"blackListEmail": True, "blackListPhone": False, "blackListFax": False},
    )


def test_campaign_only_profiles_are_left_alone_and_counted(stack, function_app_env):
    seeded(stack, 2)
    app = function_app_env(config("bidirectional"))
    run(contacts_sync)
    stack.campaign.put_profile({"email": "walk-in@example.com", "blackListEmail": True})
    run(optout_sync)
    assert app.store.reports.latest("optout_sync")["counts"]["campaign_only"] == 1


class TestBidirectionalConflicts:
    """Adobe's rule, end to end: Campaign's newer timestamp wins; otherwise opt-out TRUE wins."""

    def test_a_newer_campaign_false_beats_an_older_dynamics_true(self, stack, function_app_env):
        ids = seeded(stack, 2, donotemail=True)
        function_app_env(config("bidirectional"))
        run(contacts_sync)
        stack.campaign.advance_time(3600)
        stack.campaign.update_profile(profile(stack, ids[0])["PKey"], {"blackListEmail": False})
        run(optout_sync)
        run(contacts_sync)
        assert flags(stack, ids[0])[0]["donotemail"] is False
        assert flags(stack, ids[0])[1]["blackListEmail"] is False

    def test_a_newer_dynamics_row_gives_the_or_of_both(self, stack, function_app_env):
        ids = seeded(stack, 2)
        function_app_env(config("bidirectional"))
        run(contacts_sync)
        stack.campaign.update_profile(profile(stack, ids[0])["PKey"], {"blackListPhone": True})
        stack.dataverse.advance_time(3600)
        stack.dataverse.update_row("contact", ids[0], {"firstname": "Edited later"})
        run(optout_sync)
        run(contacts_sync)
        assert flags(stack, ids[0]) == (
            {"donotemail": False, "donotphone": True, "donotfax": False},
            {"blackListEmail": False, "blackListPhone": True, "blackListFax": False},
        )

    def test_an_opt_in_in_dynamics_does_not_override_an_older_campaign_opt_out(self, stack, function_app_env):
        ids = seeded(stack, 2, donotemail=True)
        function_app_env(config("bidirectional"))
        run(contacts_sync)
        stack.dataverse.advance_time(3600)
        stack.dataverse.update_row("contact", ids[0], {"donotemail": False})
        run(contacts_sync)
        assert flags(stack, ids[0])[0]["donotemail"] is True
        assert flags(stack, ids[0])[1]["blackListEmail"] is True

    def test_an_opt_out_in_dynamics_reaches_campaign_on_the_next_sync(self, stack, function_app_env):
        ids = seeded(stack, 2)
        function_app_env(config("bidirectional"))
        run(contacts_sync)
        stack.dataverse.update_row("contact", ids[1], {"donotphone": True})
        run(contacts_sync)
        assert flags(stack, ids[1])[1] == {
            "blackListEmail": False,
            "blackListPhone": True,
            "blackListFax": False,
        }


class WriteCounter:
    """Counts the writes our app makes to Dataverse (single PATCHes and $batch parts)."""

    def __init__(self, client) -> None:
        self.count = 0
        self._lock = threading.Lock()
        update, execute_batch = client.update, client.execute_batch

        def counted_update(*args, **kwargs):
            with self._lock:
                self.count += 1
            return update(*args, **kwargs)

        def counted_batch(requests, **kwargs):
            with self._lock:
                self.count += sum(1 for r in requests if r.method != "GET")
            return execute_batch(requests, **kwargs)

        client.update, client.execute_batch = counted_update, counted_batch


def test_a_thousand_changes_on_each_side_converge_without_ping_pong(stack, function_app_env):
    ids = seeded(stack, 2000)
    app = function_app_env(config("bidirectional"), D365_PAGE_SIZE="1000", ACS_PAGE_SIZE="500")
    run(contacts_sync)
    for contact_id in ids[:1000]:
        stack.dataverse.update_row("contact", contact_id, {"donotemail": True})
    pkeys = {p["externalId"]: p["PKey"] for p in stack.campaign.snapshot("profile")}
    for contact_id in ids[1000:]:
        stack.campaign.update_profile(pkeys[contact_id.lower()], {"blackListPhone": True})
    dynamics_writes = WriteCounter(app.dataverse)
    stack.campaign.reset_counters()
    for _ in range(3):  # more rounds than needed: echoes must cost nothing
        run(contacts_sync)
        run(optout_sync)
    assert stack.campaign.engine_calls["update"] == 1000  # Dynamics' changes, once each
    assert dynamics_writes.count == 1000  # Campaign's changes, once each
    rows = {r["contactid"].lower(): r for r in stack.dataverse.rows("contact")}
    for p in stack.campaign.snapshot("profile"):
        row = rows[p["externalId"]]
        assert (bool(row["donotemail"]), bool(row["donotphone"])) == (
            p["blackListEmail"],
            p["blackListPhone"],
        )
    assert sum(p["blackListEmail"] for p in stack.campaign.snapshot("profile")) == 1000
    assert sum(bool(r["donotphone"]) for r in rows.values()) == 1000


@pytest.mark.parametrize(
    "stack",
    [{"dataverse_options": {"max_requests": 40, "window_seconds": 1, "max_concurrency": 2}}],
    indirect=True,
)
def test_campaign_to_dynamics_respects_throttling_and_resumes_after_a_crash(stack, function_app_env):
    ids = seeded(stack, 300)
    app = function_app_env(config("acs_to_d365"), ACS_PAGE_SIZE="100", D365_BATCH_SIZE="50")
    run(contacts_sync)
    pkeys = {p["externalId"]: p["PKey"] for p in stack.campaign.snapshot("profile")}
    for contact_id in ids:
        stack.campaign.update_profile(pkeys[contact_id.lower()], {"blackListEmail": True})

    class Killed(BaseException):
        pass

    batches = {"left": 3}
    real_batch = app.dataverse.execute_batch

    def dying_batch(requests, **kwargs):
        batches["left"] -= 1
        if batches["left"] < 0:
            raise Killed()
        return real_batch(requests, **kwargs)

    app.dataverse.execute_batch = dying_batch
    with pytest.raises(Killed):
        app.optout.run()
    assert app.store.checkpoints.get("optout_sync", "campaign_profiles").position is not None
    app.dataverse.execute_batch = real_batch
    run(optout_sync)
    assert all(stack.dataverse.get_row("contact", c)["donotemail"] for c in ids)
    assert stack.dataverse.limit.rejected["requests"] > 0  # throttled, and waited out
    assert stack.dataverse.limit.peak_in_flight <= 2
    assert app.store.reports.latest("optout_sync")["outcome"] == "succeeded"


def test_opt_out_sync_survives_flaky_campaign_reads(stack, function_app_env):
    ids = seeded(stack, 50)
    function_app_env(config("acs_to_d365"))
    run(contacts_sync)
    stack.campaign.update_profile(profile(stack, ids[0])["PKey"], {"blackListEmail": True})
    stack.campaign.faults.configure(FaultConfig(error_rate=0.3, seed=3))
    run(optout_sync)
    assert stack.dataverse.get_row("contact", ids[0])["donotemail"] is True


class TestFirstRunAfterAnInitialLoad:
    """The first opt-out run reads back every profile the load created; those Campaign has not modified
    since are skipped without a ledger read, and a profile touched during the load is compared as ever."""

    def load_with_campaign_edits(self, stack, app, ids: list[str], edits: dict[str, dict]) -> None:
        """Run the initial load; once half the profiles exist, a Campaign user edits some of them."""
        real_create, lock = app.campaign.create, threading.Lock()
        created: list[str] = []

        def create_then_edit(resource, body):
            answer = real_create(resource, body)
            with lock:
                created.append(body["externalId"])
                due = len(created) == len(ids) // 2
            if due:
                for contact_id, values in edits.items():
                    assert contact_id.lower() in created  # loaded before the edit, the load still running
                    stack.campaign.update_profile(profile(stack, contact_id)["PKey"], values)
            return answer

        app.campaign.create = create_then_edit
        run(contacts_sync)
        app.campaign.create = real_create
        assert len(created) == len(ids)

    def test_an_opt_out_made_in_campaign_during_the_load_reaches_dynamics(self, stack, function_app_env):
        ids = seeded(stack, 40)
        app = function_app_env(config("bidirectional"), D365_PAGE_SIZE="10")
        self.load_with_campaign_edits(stack, app, ids, {ids[0]: {"blackListPhone": True}})
        pkeys_before = {p["PKey"] for p in stack.campaign.snapshot("profile")}
        run(optout_sync)
        assert flags(stack, ids[0]) == (
            {"donotemail": False, "donotphone": True, "donotfax": False},
            {"blackListEmail": False, "blackListPhone": True, "blackListFax": False},
        )
        counts = app.store.reports.latest("optout_sync")["counts"]
        assert counts["dynamics_updated"] == 1
        assert counts["unchanged_since_load"] == len(ids) - 1  # no ledger read for the untouched ones
        assert {p["PKey"] for p in stack.campaign.snapshot("profile")} == pkeys_before

    def test_a_profile_edited_in_other_fields_during_the_load_is_compared_and_left_alone(
        self, stack, function_app_env
    ):
        ids = seeded(stack, 20)
        app = function_app_env(config("bidirectional"), D365_PAGE_SIZE="5")
        self.load_with_campaign_edits(stack, app, ids, {ids[1]: {"firstName": "Edited in Campaign"}})
        dynamics_writes = WriteCounter(app.dataverse)
        run(optout_sync)
        counts = app.store.reports.latest("optout_sync")["counts"]
        assert counts["unchanged"] == 1  # read from the ledger: its flags are the agreed ones
        assert counts["unchanged_since_load"] == len(ids) - 1
        assert dynamics_writes.count == 0

    def test_profiles_created_after_the_load_are_compared_with_the_ledger(self, stack, function_app_env):
        seeded(stack, 10)
        app = function_app_env(config("bidirectional"))
        run(contacts_sync)
        run(optout_sync)
        later = stack.dataverse.seed_contacts(3, seed=22)
        run(contacts_sync)  # a delta run creates their profiles, after the load's window
        stack.campaign.update_profile(profile(stack, later[0])["PKey"], {"blackListEmail": True})
        run(optout_sync)
        counts = app.store.reports.latest("optout_sync")["counts"]
        assert counts["unchanged"] + counts["dynamics_updated"] == len(later)  # each read from the ledger
        assert counts["dynamics_updated"] == 1
        assert stack.dataverse.get_row("contact", later[0])["donotemail"] is True
