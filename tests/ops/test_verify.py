"""`verify`: Dynamics and Campaign compared record by record after mapping; drift found by kind (missing,
extra, mismatched, duplicates), repaired through the normal write path, and the `verify_sync` timer."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.functions.timer import TimerRequest

import verify_sync
from emulators.common import FaultConfig
from shared.cli import FAILED, OK, WARNINGS
from shared.flows.verify import Verifier, VerifyOptions
from shared.settings import SettingsError, load_settings
from tests.builders.settings_env import valid_environment
from tests.builders.sync_config import (
    CITY,
    EMAIL_AS_CREATED,
    FIRST_NAME,
    LAST_NAME,
    NOT_NOWHERE,
    NOWHERE,
    cli,
    contacts_mapping,
    sync_config,
)

OPTOUT = {"direction": "bidirectional", "pairs": [{"d365": "donotemail", "acs": "blackListEmail"}]}
CONFIG = sync_config(contacts_mapping(FIRST_NAME, LAST_NAME, EMAIL_AS_CREATED, CITY), optout=OPTOUT)
ZERO = {"missing": 0, "extra": 0, "mismatched": 0, "repaired": 0, "remaining": 0}


def verify(app, *args: str) -> tuple[int, dict, str]:
    """Run `verify`; answers the exit code, its JSON line (one mapping) and everything it printed."""
    code, out = cli(app, "verify", *args)
    *progress, last = out.splitlines()
    assert progress and not progress[0].startswith("{"), out
    return code, json.loads(last), out


def counts(result: dict, *names: str) -> dict:
    return {name: result[name] for name in names or ZERO}


def pkey_of(stack, contact_id: str) -> str:
    [profile] = stack.campaign.find("profile", externalId=contact_id)
    return profile["PKey"]


def loaded(stack, make_app, n: int, config: dict = CONFIG, *, seed: int = 41, **settings: str):
    ids = [i.lower() for i in stack.dataverse.seed_contacts(n, seed=seed)]
    app = make_app(config, **settings)
    assert app.ingress.run().outcome == "succeeded"
    return app, ids


def test_after_an_initial_load_verify_finds_no_drift_and_counts_the_data(stack, make_app):
    app, _ = loaded(stack, make_app, 30)
    stack.campaign.put_profile({"email": "walk.in@example.org", "lastName": "Walk-in"})  # Campaign's own
    stack.campaign.reset_counters()

    code, result, out = verify(app)

    assert code == OK
    assert out.splitlines()[0].startswith(
        "Verifying 'contacts' (Dynamics contact ↔ Campaign profileAndServices"
    )
    assert counts(result, "mapping", "dynamics", "campaign", "unkeyed", "complete") == {
        "mapping": "contacts",
        "dynamics": 30,
        "campaign": 31,
        "unkeyed": 1,
        "complete": True,
    }
    assert counts(result) == ZERO and result["examples"] == []
    # Pages, not look-ups: one listing call, and nothing written.
    calls = stack.campaign.engine_calls
    assert (calls["read"], calls["insert"], calls["update"], calls["delete"]) == (1, 0, 0, 0)


def test_each_kind_of_drift_is_found_then_repaired_and_a_second_verify_finds_none(stack, make_app):
    app, ids = loaded(stack, make_app, 30)
    dv, campaign = stack.dataverse, stack.campaign
    # Stale: Dynamics changed, the sync wrote it (the ledger claims the newest), then Campaign got the old
    # value back.
    old_first = dv.get_row("contact", ids[2])["firstname"]
    dv.update_row("contact", ids[2], {"firstname": "Newer"})
    assert app.ingress.run().counts["updated"] == 1
    campaign.update_profile(pkey_of(stack, ids[2]), {"firstName": old_first})
    campaign.update_profile(pkey_of(stack, ids[0]), {"lastName": "Edited in Campaign"})  # by hand
    campaign.store.delete("profile", pkey_of(stack, ids[1]))
    orphan = str(uuid.uuid4())
    campaign.put_profile({"externalId": orphan, "lastName": "Orphan", "email": "orphan@example.org"})
    # Not compared: a field written on create only, and a two-way opt-out flag (its own rule decides).
    campaign.update_profile(pkey_of(stack, ids[3]), {"email": "changed.in.campaign@example.org"})
    campaign.update_profile(pkey_of(stack, ids[4]), {"blackListEmail": True})
    campaign.reset_counters()

    code, result, _ = verify(app)

    assert code == WARNINGS
    assert counts(result, "dynamics", "campaign", "missing", "extra", "mismatched", "repaired") == {
        "dynamics": 30,
        "campaign": 30,
        "missing": 1,
        "extra": 1,
        "mismatched": 2,
        "repaired": 0,
    }
    examples = {example["key"]: example for example in result["examples"]}
    last_name = dv.get_row("contact", ids[0])["lastname"]
    assert examples[ids[0]]["kind"] == "mismatched"
    assert examples[ids[0]]["differences"] == [
        {"field": "lastName", "campaign": "Edited in Campaign", "dynamics": last_name}
    ]
    assert examples[ids[2]]["differences"] == [
        {"field": "firstName", "campaign": old_first, "dynamics": "Newer"}
    ]
    assert (examples[ids[1]]["kind"], examples[orphan]["kind"]) == ("missing", "extra")
    assert examples[orphan]["why"] == "no Dynamics row has this key"
    assert set(examples) == {ids[0], ids[1], ids[2], orphan}
    assert (
        campaign.engine_calls["insert"] + campaign.engine_calls["update"] + campaign.engine_calls["delete"]
        == 0
    )

    code, result, out = verify(app, "--repair")

    assert code == OK, out
    assert counts(result, "missing", "extra", "mismatched", "repaired", "remaining") == {
        "missing": 1,
        "extra": 1,
        "mismatched": 2,
        "repaired": 4,
        "remaining": 0,
    }
    repairs = {
        example["key"]: (example["repair"], example["in_sync_after"]) for example in result["examples"]
    }
    assert repairs == {
        ids[0]: ("updated", True),
        ids[1]: ("created", True),
        ids[2]: ("updated", True),
        orphan: ("deleted", True),
    }
    assert campaign.find("profile", externalId=ids[0])[0]["lastName"] == last_name
    assert campaign.find("profile", externalId=ids[2])[0]["firstName"] == "Newer"
    assert len(campaign.find("profile", externalId=ids[1])) == 1
    assert campaign.find("profile", externalId=orphan) == []
    assert campaign.find("profile", externalId=ids[3])[0]["email"] == "changed.in.campaign@example.org"
    # The repairs went through the ledger: it names the recreated profile.
    assert app.store.ledger.get("contacts", ids[1]).target_key == pkey_of(stack, ids[1])

    code, result, _ = verify(app)
    assert code == OK and counts(result) == ZERO and result["examples"] == []


def test_a_duplicate_profile_is_found_as_extra_and_repaired_to_one(stack, make_app):
    app, ids = loaded(stack, make_app, 5)
    original = pkey_of(stack, ids[0])
    duplicate = stack.campaign.put_duplicate(original)

    code, result, _ = verify(app)
    assert code == WARNINGS
    assert counts(result, "campaign", "missing", "extra", "duplicates", "mismatched") == {
        "campaign": 6,
        "missing": 0,
        "extra": 1,
        "duplicates": 1,
        "mismatched": 0,
    }
    [example] = result["examples"]
    assert (example["kind"], example["key"]) == ("extra", ids[0])
    assert sorted(example["campaign_keys"]) == sorted([original, duplicate])
    assert example["why"] == "2 Campaign records have this key"
    # A sample sees duplicates too: the look-up by key finds both.
    code, sample, _ = verify(app, "--limit", "5")
    assert code == WARNINGS and (sample["extra"], sample["duplicates"]) == (None, 1)

    code, result, _ = verify(app, "--repair")
    assert code == OK and (result["repaired"], result["remaining"]) == (1, 0)
    # The record the ledger points at is kept.
    assert [p["PKey"] for p in stack.campaign.find("profile", externalId=ids[0])] == [original]
    assert verify(app)[0] == OK


def test_limit_checks_only_the_first_n_rows_by_key_and_leaves_extra_unknown(stack, make_app):
    app, ids = loaded(stack, make_app, 20)
    stack.campaign.put_profile({"externalId": str(uuid.uuid4()), "lastName": "Orphan"})
    for contact_id in ids:
        stack.campaign.update_profile(pkey_of(stack, contact_id), {"lastName": "Edited everywhere"})
    stack.campaign.reset_counters()

    code, result, out = verify(app, "--limit", "5")

    assert code == WARNINGS
    assert counts(result, "dynamics", "campaign", "missing", "extra", "mismatched") == {
        "dynamics": 5,
        "campaign": 5,
        "missing": 0,
        "extra": None,
        "mismatched": 5,
    }
    assert "first 5 row(s)" in out.splitlines()[0] and "extra not searched (sample)" in out
    assert stack.campaign.engine_calls["read"] == 5  # one look-up by key per row, no listing
    assert len(result["examples"]) == 5


def test_the_verify_sync_timer_is_off_by_default_and_on_it_repairs_and_reports_the_drift(
    stack, make_app, function_app_env
):
    off = make_app(CONFIG)
    assert off.settings.verify_sync_enabled is False
    assert off.verify_sync().outcome == "disabled" and off.store.reports.latest("verify_sync") is None
    status = json.loads(cli(off, "status", "--json")[1])
    assert (
        status["flows"]["verify_sync"]["state"] == "disabled"
        and status["flows"]["verify_sync"]["drift"] is None
    )

    app = function_app_env(CONFIG, VERIFY_SYNC_ENABLED="true")
    ids = [i.lower() for i in stack.dataverse.seed_contacts(10, seed=43)]
    # A contact Campaign rejects (dead letter): missing from Campaign, and a repair cannot fix it.
    bad = stack.dataverse.create_row(
        "contact", {"lastname": "Typo", "emailaddress1": "not-an-address"}
    ).lower()
    app.contacts_sync()
    stack.campaign.update_profile(pkey_of(stack, ids[0]), {"lastName": "Edited in Campaign"})
    stack.campaign.store.delete("profile", pkey_of(stack, ids[1]))

    verify_sync.main(TimerRequest(past_due=False))

    report = app.store.reports.latest("verify_sync")
    assert report["outcome"] == "partial"
    assert {name: report["counts"][name] for name in ("drift", "repaired", "remaining")} == {
        "drift": 3,
        "repaired": 2,
        "remaining": 1,
    }
    assert (report["counts"]["contacts.missing"], report["counts"]["contacts.mismatched"]) == (2, 1)
    assert report["notes"] == [
        "contacts: 11 Dynamics row(s), 9 Campaign record(s): 2 missing, 0 extra, 1 mismatched; "
        "2 repaired, 1 still drifting"
    ]
    assert stack.campaign.find("profile", externalId=ids[0])[0]["lastName"] != "Edited in Campaign"
    assert stack.campaign.find("profile", externalId=bad) == []

    code, out = cli(app, "status", "--json")
    status = json.loads(out)
    flow = status["flows"]["verify_sync"]
    assert code == WARNINGS and (flow["enabled"], flow["state"]) == (True, "degraded")
    assert (flow["drift"]["found"], flow["drift"]["repaired"], flow["drift"]["remaining"]) == (3, 2, 1)
    assert (
        "verify_sync: 1 record(s) still differ between Dynamics and Campaign after the last run's repair "
        "(`verify` lists them)" in status["problems"]
    )
    code, out = cli(app, "status")
    assert next(line for line in out.splitlines() if line.startswith("verify_sync ")).split()[:2] == [
        "verify_sync",
        "degraded",
    ]
    assert (
        "  Last run: 3 drifted record(s) found (2 missing, 0 extra, 1 mismatched), 2 repaired, "
        "1 still drifting" in out.splitlines()
    )


def test_a_filtered_out_row_and_apply_deletes_off_are_not_drift(stack, make_app):
    keep_everything = contacts_mapping(
        FIRST_NAME,
        LAST_NAME,
        CITY,
        filter={**NOT_NOWHERE, "delete_filtered_out": False},
        apply_deletes=False,
    )
    dv = stack.dataverse
    ids = [i.lower() for i in dv.seed_contacts(10, seed=44)]
    dv.update_row("contact", ids[0], {"address1_city": NOWHERE})  # outside the filter from the start
    app = make_app(sync_config(keep_everything))
    app.ingress.run()
    dv.update_row("contact", ids[1], {"address1_city": NOWHERE})  # left the filter: its profile is kept
    dv.delete_row("contact", ids[2])  # deleted in Dynamics: its profile is kept
    app.ingress.run()

    code, result, _ = verify(app)

    assert code == OK
    assert counts(result, "dynamics", "campaign", "excluded", "kept", "missing", "extra", "mismatched") == {
        "dynamics": 9,
        "campaign": 9,
        "excluded": 2,
        "kept": 2,
        "missing": 0,
        "extra": 0,
        "mismatched": 0,
    }
    # The same data under a mapping that deletes them: both kept profiles are extra.
    strict = make_app(sync_config(contacts_mapping(FIRST_NAME, LAST_NAME, CITY, filter=NOT_NOWHERE)))
    code, result, _ = verify(strict)
    assert code == WARNINGS and (result["extra"], result["kept"]) == (2, 0)
    assert {example["key"]: example["why"] for example in result["examples"]} == {
        ids[1]: "the Dynamics row is outside the mapping's filter (delete_filtered_out)",
        ids[2]: "no Dynamics row has this key",
    }
    # Repaired as that mapping's sync would, though its ledger never saw them.
    code, result, _ = verify(strict, "--repair")
    assert code == OK and {example["repair"] for example in result["examples"]} == {
        "filtered_out_deleted",
        "deleted",
    }
    assert (
        stack.campaign.find("profile", externalId=ids[1])
        == stack.campaign.find("profile", externalId=ids[2])
        == []
    )


def test_verify_refuses_a_bad_limit_and_an_unknown_mapping(make_app):
    app = make_app(CONFIG)
    assert cli(app, "verify", "--limit", "0") == (FAILED, "failed: --limit must be at least 1\n")
    code, out = cli(app, "verify", "--mapping", "account")
    assert code == FAILED and "no table mapping named or reading 'account'" in out


def test_a_timer_run_out_of_time_stops_cleanly_and_status_says_so(stack, make_app):
    app, _ = loaded(stack, make_app, 5, VERIFY_SYNC_ENABLED="true")
    out_of_time = Verifier(app.ingress, VerifyOptions(time_budget_seconds=0))

    report = out_of_time.run()

    assert report.outcome == "stopped_for_time"
    assert report.notes == [
        "contacts: 0 Dynamics row(s), 0 Campaign record(s): 0 missing, 0 extra, 0 mismatched; "
        "stopped: the time budget ran out",
        "contacts: not finished within the time budget; run "
        "`python -m shared.cli verify --mapping contacts --repair` from an operator shell (no time limit)",
    ]
    status = json.loads(cli(app, "status", "--json")[1])
    assert status["flows"]["verify_sync"]["state"] == "degraded"
    assert any(
        problem.startswith("verify_sync: the last run ran out of time") for problem in status["problems"]
    )


def test_a_side_that_cannot_be_read_fails_the_verify_with_the_error_in_its_json_line(stack, make_app):
    app, _ = loaded(stack, make_app, 5, HTTP_MAX_RETRIES="0")
    stack.campaign.faults.configure(FaultConfig(error_rate=1.0))

    code, result, out = verify(app)

    assert code == FAILED
    assert "[campaign 503" in result["error"] and "  failed: [campaign 503" in out


def test_the_verify_schedule_is_validated_like_the_other_schedules():
    assert load_settings(valid_environment()).verify_schedule == "0 30 2 * * *"
    with pytest.raises(SettingsError) as caught:
        load_settings(valid_environment(VERIFY_SCHEDULE="30 2 * * *"))
    assert [name for name, _ in caught.value.problems] == ["VERIFY_SCHEDULE"]
