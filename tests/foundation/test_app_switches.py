from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.app import FULL_COLLECTION_THRESHOLD, App
from shared.settings import load_settings
from tests.builders.settings_env import valid_environment


@pytest.mark.parametrize(
    ("flow", "switch"),
    [
        ("contacts_sync", "CONTACTS_SYNC_ENABLED"),
        ("events_push", "EVENTS_PUSH_ENABLED"),
        ("optout_sync", "OPTOUT_SYNC_ENABLED"),
    ],
)
def test_a_switched_off_timer_does_nothing_and_says_so(flow, switch):
    environment = valid_environment(**{switch: "false"})
    if flow == "events_push":
        del environment["ACS_EVENTS_JOURNAL_URL"], environment["ACS_IMS_ORG_ID"]
    app = App(load_settings(environment))
    report = getattr(app, flow)(past_due=True)
    assert (report.flow, report.outcome) == (flow, "disabled")
    assert "store" not in vars(app)  # nothing was built, nothing was called


def test_a_paused_webhook_still_answers_200_so_dynamics_records_no_failures():
    app = App(load_settings(valid_environment(WEBHOOK_ENABLED="false")))
    answer = app.webhook("POST", b"{}", {})
    assert (answer.status, answer.body) == (200, {"outcome": "disabled"})


def test_an_app_process_runs_full_garbage_collections_ten_times_less_often_and_young_ones_as_before():
    # In a process of its own: the collector's thresholds are the process's.
    probe = (
        "import gc; before = gc.get_threshold(); from shared.app import get_app; get_app(); "
        "print(json.dumps([before, gc.get_threshold()]))"
    )
    env = {**os.environ, **valid_environment()}
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    before, after = json.loads(out.splitlines()[-1])
    assert after[:2] == before[:2]
    assert after[2] == before[2] * 10 == FULL_COLLECTION_THRESHOLD
