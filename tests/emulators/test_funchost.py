"""The local functions host: NCRONTAB schedules, `%SETTING%` bindings and keys, as the real host does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from emulators.funchost import CronSchedule, FunctionHost, discover, resolve_setting

NOON = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 11, 22, 12, 5, 0, tzinfo=UTC)),
        ("*/15 * * * * *", datetime(2026, 11, 22, 12, 0, 15, tzinfo=UTC)),
        ("0 30 9 * * *", datetime(2026, 11, 23, 9, 30, 0, tzinfo=UTC)),
        ("0 0 8 * * 1-5", datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)),  # 22 Nov 2026 is a Sunday
        ("0 0,30 12 * * *", datetime(2026, 11, 22, 12, 30, 0, tzinfo=UTC)),
    ],
)
def test_ncrontab_schedules_fire_when_the_real_host_would(expression, expected):
    assert CronSchedule(expression).next_after(NOON) == expected


@pytest.mark.parametrize("expression", ["*/5 * * * *", "0 61 * * * *", "0 0 25 * * *", "every minute"])
def test_a_schedule_the_host_would_not_take_is_refused_by_name(expression):
    with pytest.raises(ValueError, match="6 valid fields"):
        CronSchedule(expression)


def test_binding_expressions_resolve_app_settings_and_name_missing_ones():
    assert (
        resolve_setting("%CONTACTS_SYNC_SCHEDULE%", {"CONTACTS_SYNC_SCHEDULE": "0 */5 * * * *"})
        == "0 */5 * * * *"
    )
    with pytest.raises(KeyError, match="EVENTS_PUSH_SCHEDULE"):
        resolve_setting("%EVENTS_PUSH_SCHEDULE%", {})


def test_every_function_folder_is_found_with_its_trigger():
    functions = {spec.name: spec.kind for spec in discover(FunctionHost.__init__.__globals__["ROOT"])}
    assert functions["webhook_d365"] == "httpTrigger"
    assert {functions[n] for n in ("contacts_sync", "events_push", "optout_sync")} == {"timerTrigger"}


@pytest.fixture
def host():
    keys = {"masterKey": "master-key-for-tests", "functionKeys": {"default": "function-key-for-tests"}}
    with FunctionHost(keys=keys, run_timers=False) as running:
        yield running


def test_http_functions_need_a_function_key_in_the_query_or_header(host):
    url = f"{host.base_url}/api/webhook_d365"
    assert requests.post(url, data=b"{}", timeout=10).status_code == 401
    assert requests.post(url + "?code=wrong", data=b"{}", timeout=10).status_code == 401
    # With a key the function runs: the body is not a Dataverse context, so it answers 400.
    json_body = {"data": b"{}", "headers": {"content-type": "application/json"}, "timeout": 10}
    assert requests.post(url + "?code=function-key-for-tests", **json_body).status_code == 400
    assert (
        requests.post(
            url,
            data=b"{}",
            headers={"x-functions-key": "master-key-for-tests", "content-type": "application/json"},
            timeout=10,
        ).status_code
        == 400
    )
    assert requests.get(url + "?code=function-key-for-tests", timeout=10).status_code == 405
    assert requests.post(f"{host.base_url}/api/nothing-here", timeout=10).status_code == 404


def test_running_a_timer_on_demand_needs_the_master_key(host):
    url = f"{host.base_url}/admin/functions/contacts_sync"
    assert (
        requests.post(url, headers={"x-functions-key": "function-key-for-tests"}, timeout=10).status_code
        == 401
    )
    assert (
        requests.post(
            f"{host.base_url}/admin/functions/nope",
            headers={"x-functions-key": "master-key-for-tests"},
            timeout=10,
        ).status_code
        == 404
    )
