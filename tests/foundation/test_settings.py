from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import SettingsError, load_settings
from tests.builders.settings_env import valid_environment

ROOT = Path(__file__).resolve().parents[2]


def problems_of(environ: dict[str, str]) -> dict[str, str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    return dict(caught.value.problems)


def test_a_complete_environment_loads_with_defaults():
    settings = load_settings(valid_environment())
    assert settings.d365_max_concurrency == 8
    assert settings.campaign_base_url == "https://mc.adobe.io/contoso-mkt-stage/campaign"
    assert settings.d365_scope == "https://contoso.crm.dynamics.com/.default"
    assert settings.d365_authority.endswith("/00000000-0000-0000-0000-0000000000aa")


def test_secrets_never_print_in_clear():
    settings = load_settings(valid_environment())
    assert "test-secret-not-real" not in repr(settings)
    assert settings.acs_client_secret.get_secret_value() == "test-secret-not-real"


def test_setting_names_are_case_insensitive_as_on_windows_plans():
    env = {k.lower(): v for k, v in valid_environment().items()}
    assert load_settings(env).acs_tenant == "contoso-mkt-stage"


def test_an_empty_environment_names_every_missing_setting_in_one_error():
    problems = problems_of({})
    for name in (
        "D365_ORG_URL",
        "D365_TENANT_ID",
        "D365_CLIENT_ID",
        "D365_CLIENT_SECRET",
        "ACS_TENANT",
        "ACS_CLIENT_ID",
        "ACS_CLIENT_SECRET",
        "ACS_EVENTS_JOURNAL_URL",
        "ACS_IMS_ORG_ID",
        "STATE_STORAGE_ACCOUNT_NAME",
    ):
        assert name in problems, name
    assert problems["D365_ORG_URL"] == "missing"


def test_invalid_values_are_reported_together_with_missing_ones():
    env = valid_environment(
        D365_MAX_CONCURRENCY="80",
        CONTACTS_SYNC_SCHEDULE="*/5 * * * *",
        D365_ORG_URL="contoso.crm",
        EVENT_TYPES="open,unsubscribe",
    )
    del env["ACS_CLIENT_ID"]
    problems = problems_of(env)
    assert set(problems) == {
        "D365_MAX_CONCURRENCY",
        "CONTACTS_SYNC_SCHEDULE",
        "D365_ORG_URL",
        "EVENT_TYPES",
        "ACS_CLIENT_ID",
    }
    assert "52" in problems["D365_MAX_CONCURRENCY"]
    assert "6 valid fields" in problems["CONTACTS_SYNC_SCHEDULE"]
    assert "unsubscribe" in problems["EVENT_TYPES"]


@pytest.mark.parametrize("schedule", ["0 61 * * * *", "0 0 24 * * *", "0 0 8 * * Mon-Funday"])
def test_a_schedule_with_six_fields_out_of_range_is_refused_before_the_host_would(schedule):
    problems = problems_of(valid_environment(OPTOUT_SYNC_SCHEDULE=schedule))
    assert "6 valid fields" in problems["OPTOUT_SYNC_SCHEDULE"]


def test_events_settings_are_required_only_while_events_are_enabled():
    env = valid_environment(EVENTS_PUSH_ENABLED="false")
    del env["ACS_EVENTS_JOURNAL_URL"], env["ACS_IMS_ORG_ID"]
    assert load_settings(env).events_push_enabled is False


def test_a_certificate_can_replace_the_dynamics_client_secret():
    env = valid_environment(D365_CLIENT_CERTIFICATE_PATH="/certs/app.pem")
    del env["D365_CLIENT_SECRET"]
    assert load_settings(env).d365_client_secret is None


def test_importing_settings_with_an_empty_environment_fails_with_one_message():
    result = subprocess.run(
        [sys.executable, "-c", "import shared.settings"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "shared.settings.SettingsError: Invalid app settings" in result.stderr
    assert result.stderr.count("Invalid app settings") == 1
    for name in ("D365_ORG_URL", "ACS_CLIENT_SECRET", "STATE_STORAGE_ACCOUNT_NAME"):
        assert f"  - {name}: missing" in result.stderr


def test_the_local_settings_example_names_only_settings_the_app_reads():
    import json

    from shared.settings import AppSettings

    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    host_settings = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
    known = {name.upper() for name in AppSettings.model_fields}
    assert set(values) - host_settings <= known
    assert {"D365_ORG_URL", "ACS_CLIENT_SECRET", "CONTACTS_SYNC_SCHEDULE"} <= set(values)
