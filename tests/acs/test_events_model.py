"""Parsing Campaign email events: default shapes, custom field paths and type maps, tolerance."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.acs.events import EmailEventType, EventFieldPaths, EventParser, parse_timestamp


def test_flat_click_event_parses_every_field():
    event = {
        "eventId": "ev-1",
        "type": "click",
        "timestamp": "2026-03-01T10:15:30.250Z",
        "externalId": "6c2f1a9e-3b7d-4e0a-9f21-0d8c5b4a7e13",
        "recipientId": "@rcp",
        "campaignId": "CMP1",
        "campaignLabel": "Spring",
        "deliveryId": "DM1",
        "deliveryLabel": "Spring newsletter",
        "mirrorPageUrl": "https://mirror.example.test/m/1",
        "clickedUrl": "https://shop.example.test/offer",
    }

    parsed = EventParser().parse(event, position="pos-1")

    assert parsed.event_id == "ev-1"
    assert parsed.type is EmailEventType.CLICK
    assert parsed.timestamp == datetime(2026, 3, 1, 10, 15, 30, 250000, tzinfo=UTC)
    assert parsed.external_id == "6c2f1a9e-3b7d-4e0a-9f21-0d8c5b4a7e13"
    assert parsed.recipient_id == "@rcp"
    assert (parsed.campaign_id, parsed.campaign_label) == ("CMP1", "Spring")
    assert (parsed.delivery_id, parsed.delivery_label) == ("DM1", "Spring newsletter")
    assert parsed.mirror_page_url == "https://mirror.example.test/m/1"
    assert parsed.clicked_url == "https://shop.example.test/offer"
    assert parsed.position == "pos-1"
    assert parsed.raw is event


def test_cloudevents_envelope_with_campaign_fields_under_data_parses_with_default_paths():
    event = {
        "specversion": "1.0",
        "id": "ev-2",
        "type": "com.adobe.campaign.standard.email.bounce",
        "time": "2026-03-01T10:15:30.000Z",
        "data": {
            "eventType": "bounce",
            "timestamp": "2026-03-01T10:15:30.000Z",
            "profile": {"recipientId": "@p2", "externalId": "c-2", "email": "c2@example.test"},
            "campaign": {"id": "OP2", "label": "Summer"},
            "delivery": {"id": "DM2", "label": "Summer mail"},
            "mirrorPageUrl": "https://m.example.test/2",
            "bounce": {"type": "hard", "reason": "User unknown"},
        },
    }

    parsed = EventParser().parse(event)

    assert parsed.type is EmailEventType.BOUNCE
    assert parsed.raw_type == "com.adobe.campaign.standard.email.bounce"
    assert parsed.event_id == "ev-2"
    assert parsed.timestamp == datetime(2026, 3, 1, 10, 15, 30, tzinfo=UTC)
    assert (parsed.external_id, parsed.recipient_id) == ("c-2", "@p2")
    assert (parsed.campaign_id, parsed.campaign_label) == ("OP2", "Summer")
    assert (parsed.delivery_id, parsed.delivery_label) == ("DM2", "Summer mail")
    assert parsed.mirror_page_url == "https://m.example.test/2"
    assert (parsed.bounce_type, parsed.bounce_reason) == ("hard", "User unknown")


def test_grouped_shape_without_envelope_parses_with_default_paths():
    event = {
        "eventId": "ev-5",
        "eventType": "opened",
        "eventDate": "2026-03-01 10:15:30.000Z",
        "profile": {"externalId": "c-5", "PKey": "@p5"},
        "campaign": {"id": "OP5", "label": "Autumn"},
        "delivery": {"id": "DM5", "label": "Autumn mail", "mirrorPageUrl": "https://m.example.test/5"},
    }

    parsed = EventParser().parse(event)

    assert (parsed.event_id, parsed.type) == ("ev-5", EmailEventType.OPEN)
    assert parsed.timestamp == datetime(2026, 3, 1, 10, 15, 30, tzinfo=UTC)
    assert (parsed.external_id, parsed.recipient_id) == ("c-5", "@p5")
    assert (parsed.campaign_label, parsed.delivery_label) == ("Autumn", "Autumn mail")
    assert parsed.mirror_page_url == "https://m.example.test/5"


def test_custom_field_paths_from_an_app_setting_replace_only_the_fields_given():
    paths = EventFieldPaths.from_json(
        '{"external_id": "payload.crm.contactid", "timestamp": ["payload.when", "missing.path"],'
        ' "type": "payload.kind"}'
    )
    event = {
        "eventId": "ev-3",
        "payload": {"crm": {"contactid": "c-3"}, "when": 1767225600000, "kind": "Sent"},
    }

    parsed = EventParser(paths=paths).parse(event)

    assert parsed.external_id == "c-3"
    assert parsed.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed.type is EmailEventType.SEND
    assert parsed.event_id == "ev-3"  # default path still used for fields not overridden


def test_field_paths_setting_with_a_typo_is_refused():
    with pytest.raises(ValueError, match="unknown fields \\['externalid'\\]"):
        EventFieldPaths.from_json('{"externalid": "x"}')


def test_soft_bounce_is_other_and_hard_bounce_is_bounce():
    parser = EventParser()
    soft = parser.parse({"type": "bounce", "bounceType": "Soft", "bounceReason": "Mailbox full"})
    hard = parser.parse({"type": "bounce", "bounceType": "Hard", "bounceReason": "User unknown"})
    hard_by_code = parser.parse({"eventId": "b3", "type": "bounce", "failureType": 1})
    soft_by_type = parser.parse({"eventId": "b4", "type": "email.soft_bounce"})

    assert soft.type is EmailEventType.OTHER
    assert soft.raw_type == "bounce"
    assert soft.bounce_type == "Soft"
    assert (hard.type, hard.bounce_reason) == (EmailEventType.BOUNCE, "User unknown")
    assert hard_by_code.type is EmailEventType.BOUNCE
    assert soft_by_type.type is EmailEventType.OTHER


def test_unknown_type_is_kept_as_other_with_its_raw_type():
    parsed = EventParser().parse({"eventId": "u1", "type": "email.unsubscribe"})

    assert parsed.type is EmailEventType.OTHER
    assert parsed.raw_type == "email.unsubscribe"


def test_type_map_setting_adds_raw_types():
    setting = '{"acs.message.feedback.sent": "send", "Opened2": "open"}'
    parser = EventParser.from_settings(type_map_json=setting)

    assert parser.parse({"type": "acs.message.feedback.sent"}).type is EmailEventType.SEND
    assert parser.parse({"type": "OPENED2"}).type is EmailEventType.OPEN
    assert parser.parse({"type": "click"}).type is EmailEventType.CLICK


def test_type_map_setting_with_an_unknown_target_is_refused():
    with pytest.raises(ValueError, match="unknown types"):
        EventParser.from_settings(type_map_json='{"x": "unsubscribe"}')


@pytest.mark.parametrize("event", [{}, {"type": None, "timestamp": "yesterday"}, "not an object", [1, 2]])
def test_malformed_events_never_raise(event):
    parsed = EventParser().parse(event, position="p")

    assert parsed.type is EmailEventType.OTHER
    assert parsed.timestamp is None
    assert parsed.event_id.startswith("sha256:")


def test_events_without_id_get_the_same_content_hash_so_duplicates_still_collapse():
    parser = EventParser()
    body = {"type": "open", "externalId": "c-1", "timestamp": "2026-01-01T00:00:00Z"}
    first, duplicate = parser.parse(dict(body), position="p1"), parser.parse(dict(body), position="p9")

    assert first.event_id == duplicate.event_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01 00:00:00.000Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T01:00:00+01:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),
        (1767225600, datetime(2026, 1, 1, tzinfo=UTC)),
        (1767225600000, datetime(2026, 1, 1, tzinfo=UTC)),
        ("soon", None),
        (True, None),
    ],
)
def test_timestamps_in_every_expected_shape_become_aware_utc(value, expected):
    assert parse_timestamp(value) == expected
