from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.flows.optout import parse_campaign_time, resolve_optout, timestamp_field

OLDER = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NEWER = OLDER + timedelta(hours=1)


@pytest.mark.parametrize(
    ("dynamics", "dynamics_time", "campaign", "campaign_time", "expected", "rule"),
    [
        # Campaign's timestamp is newer: Campaign's value wins, whichever it is.
        (True, OLDER, False, NEWER, False, "campaign_newer"),
        (False, OLDER, True, NEWER, True, "campaign_newer"),
        # Equal timestamps: opt-out TRUE wins.
        (True, OLDER, False, OLDER, True, "opt_out_wins"),
        (False, OLDER, True, OLDER, True, "opt_out_wins"),
        # Dynamics newer: the OR of both.
        (False, NEWER, True, OLDER, True, "opt_out_wins"),
        (True, NEWER, False, OLDER, True, "opt_out_wins"),
        # Unknown Campaign timestamp: not newer, so TRUE wins.
        (False, OLDER, True, None, True, "opt_out_wins"),
        # Both sides already agree: nothing to decide.
        (False, NEWER, False, OLDER, False, "agree"),
        (True, OLDER, True, NEWER, True, "agree"),
    ],
)
def test_the_bidirectional_rule_follows_adobes_documented_behaviour(
    dynamics, dynamics_time, campaign, campaign_time, expected, rule
):
    decision = resolve_optout(
        d365_value=dynamics, d365_modified_on=dynamics_time, acs_value=campaign, acs_modified_on=campaign_time
    )
    assert (decision.value, decision.rule) == (expected, rule)


def test_campaign_timestamps_parse_in_campaigns_own_format_and_iso():
    assert parse_campaign_time("2026-11-20 09:00:00.000Z") == OLDER
    assert parse_campaign_time("2026-11-20T09:00:00Z") == OLDER
    assert parse_campaign_time("") is None and parse_campaign_time("yesterday") is None


def test_the_blacklist_flag_has_campaigns_odd_timestamp_name():
    assert timestamp_field("blackList") == "blackListAllLastModified"
    assert timestamp_field("blackListEmail") == "blackListEmailLastModified"
