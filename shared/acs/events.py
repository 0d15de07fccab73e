"""Campaign email events (send / open / click / hard bounce) as read from the Adobe I/O Events journal.

Adobe does not publish the body of Campaign's events, so the parser is tolerant: every field is looked
up through a list of candidate dotted paths (`EventFieldPaths`, overridable from an app setting), raw
type strings are mapped to the four types we act on (`EVENT_TYPE_MAP`, overridable too), and anything
unexpected becomes an `other` event or an empty field, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EmailEventType(StrEnum):
    SEND = "send"
    OPEN = "open"
    CLICK = "click"
    BOUNCE = "bounce"  # hard bounces only
    OTHER = "other"  # soft bounces and anything we do not act on; `raw_type` says what it was


@dataclass(frozen=True)
class CampaignEmailEvent:
    event_id: str
    type: EmailEventType
    raw_type: str | None
    timestamp: datetime | None
    external_id: str | None
    recipient_id: str | None
    campaign_id: str | None
    campaign_label: str | None
    delivery_id: str | None
    delivery_label: str | None
    mirror_page_url: str | None
    clicked_url: str | None
    bounce_type: str | None
    bounce_reason: str | None
    position: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class EventFieldPaths:
    """Where each field lives in an event: candidate dotted paths, the first one present wins.

    The defaults read first the CloudEvents envelope the Campaign emulator documents (`id`, `type`,
    `time`, Campaign fields under `data`: `data.profile.externalId`, `data.bounce.type`, ...), then a
    flat camelCase body, its snake_case twin, and grouped variants (`profile.externalId`). A list index
    may appear in a path (`items.0.url`).
    """

    event_id: tuple[str, ...] = ("id", "eventId", "event_id", "@id", "data.eventId")
    type: tuple[str, ...] = ("type", "data.eventType", "eventType", "event_type", "@type")
    timestamp: tuple[str, ...] = (
        "time",
        "data.timestamp",
        "timestamp",
        "eventDate",
        "event_date",
        "activitystreams:published",
    )
    external_id: tuple[str, ...] = (
        "data.profile.externalId",
        "externalId",
        "external_id",
        "profile.externalId",
        "data.externalId",
    )
    recipient_id: tuple[str, ...] = (
        "data.profile.recipientId",
        "recipientId",
        "recipient_id",
        "profile.recipientId",
        "profile.PKey",
        "data.profile.PKey",
    )
    campaign_id: tuple[str, ...] = ("data.campaign.id", "campaignId", "campaign_id", "campaign.id")
    campaign_label: tuple[str, ...] = (
        "data.campaign.label",
        "campaignLabel",
        "campaign_label",
        "campaign.label",
    )
    delivery_id: tuple[str, ...] = ("data.delivery.id", "deliveryId", "delivery_id", "delivery.id")
    delivery_label: tuple[str, ...] = (
        "data.delivery.label",
        "deliveryLabel",
        "delivery_label",
        "delivery.label",
    )
    mirror_page_url: tuple[str, ...] = (
        "data.mirrorPageUrl",
        "mirrorPageUrl",
        "mirror_page_url",
        "delivery.mirrorPageUrl",
    )
    clicked_url: tuple[str, ...] = ("data.clickedUrl", "clickedUrl", "clicked_url", "data.url", "url")
    bounce_type: tuple[str, ...] = (
        "data.bounce.type",
        "bounceType",
        "bounce_type",
        "failureType",
        "bounce.type",
    )
    bounce_reason: tuple[str, ...] = (
        "data.bounce.reason",
        "bounceReason",
        "bounce_reason",
        "failureReason",
        "bounce.reason",
    )

    @classmethod
    def from_json(cls, text: str) -> EventFieldPaths:
        """Defaults overridden by an app setting: `{"external_id": "data.contactId", "timestamp": [...]}`.

        Each given field replaces that field's candidates; unknown field names are an error (a typo
        would otherwise silently leave the default in place).
        """
        try:
            overrides = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"event field paths: not JSON: {exc}") from exc
        if not isinstance(overrides, dict):
            raise ValueError("event field paths: expected a JSON object of field -> path or [paths]")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"event field paths: unknown fields {unknown}; known: {sorted(known)}")
        values: dict[str, tuple[str, ...]] = {}
        for name, paths in overrides.items():
            candidates = [paths] if isinstance(paths, str) else paths
            if not candidates or not all(isinstance(p, str) and p for p in candidates):
                raise ValueError(f"event field paths: '{name}' needs a path or a non-empty list of paths")
            values[name] = tuple(candidates)
        return cls(**values)


# Keys are lower-case raw types; a raw type is looked up whole, then by its last segment
# ("com.adobe.campaign.email.open" -> "open").
EVENT_TYPE_MAP: Mapping[str, EmailEventType] = {
    **dict.fromkeys(("send", "sent", "delivered", "email_sent", "emailsent"), EmailEventType.SEND),
    **dict.fromkeys(("open", "opened", "email_open", "email_opened", "emailopen"), EmailEventType.OPEN),
    **dict.fromkeys(("click", "clicked", "email_click", "email_clicked", "emailclick"), EmailEventType.CLICK),
    **dict.fromkeys(
        ("bounce", "bounced", "email_bounce", "emailbounce", "hard_bounce", "hardbounce"),
        EmailEventType.BOUNCE,
    ),
    **dict.fromkeys(("soft_bounce", "softbounce"), EmailEventType.OTHER),
}

# A bounce whose type says anything else (soft, ignored, ...) is not a hard bounce; a bounce event
# without any type is taken as hard. Campaign's failure type enumeration: 0 soft, 1 hard, 2 ignored.
HARD_BOUNCE_TYPES = frozenset({"hard", "1", "hard_bounce", "hardbounce", "permanent"})

_SEGMENT_SEPARATORS = re.compile(r"[.:/]")


def type_map_from_json(text: str) -> dict[str, EmailEventType]:
    """`EVENT_TYPE_MAP` extended from an app setting: `{"campaign.email.delivered": "send", ...}`."""
    try:
        overrides = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"event type map: not JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise ValueError("event type map: expected a JSON object of raw type -> send/open/click/bounce/other")
    allowed = {t.value for t in EmailEventType}
    wrong = {k: v for k, v in overrides.items() if v not in allowed}
    if wrong:
        raise ValueError(f"event type map: {wrong} map to unknown types; allowed: {sorted(allowed)}")
    return {**EVENT_TYPE_MAP, **{k.lower(): EmailEventType(v) for k, v in overrides.items()}}


_MISSING = object()


def lookup(data: Any, path: str) -> Any:
    """Follow a dotted path through dicts (and list indexes); `_MISSING` when any step is absent.

    A flat key that itself contains the dots (`{"profile.externalId": ...}`) is tried whole first.
    """
    if isinstance(data, Mapping) and path in data:
        return data[path]
    current = data
    for step in path.split("."):
        if isinstance(current, Mapping) and step in current:
            current = current[step]
        elif isinstance(current, list) and step.isdigit() and int(step) < len(current):
            current = current[int(step)]
        else:
            return _MISSING
    return current


def _first(data: Any, candidates: tuple[str, ...]) -> Any:
    for path in candidates:
        value = lookup(data, path)
        if value is not _MISSING and value is not None and value != "":
            return value
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 or Campaign's `2019-09-25 23:20:35.000Z`, or epoch seconds/milliseconds -> aware UTC."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _classify(
    raw_type: str | None, bounce_type: str | None, type_map: Mapping[str, EmailEventType]
) -> EmailEventType:
    if not raw_type:
        return EmailEventType.OTHER
    key = raw_type.strip().lower()
    mapped = type_map.get(key) or type_map.get(_SEGMENT_SEPARATORS.split(key)[-1], EmailEventType.OTHER)
    is_soft = bounce_type is not None and bounce_type.strip().lower() not in HARD_BOUNCE_TYPES
    return EmailEventType.OTHER if mapped is EmailEventType.BOUNCE and is_soft else mapped


def _fallback_id(event: Any) -> str:
    # Duplicates of one event carry the same body, so a content hash still deduplicates them.
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class EventParser:
    """Turns one journal event body into a `CampaignEmailEvent` using configurable paths and type map."""

    paths: EventFieldPaths = field(default_factory=EventFieldPaths)
    type_map: Mapping[str, EmailEventType] = field(default_factory=lambda: dict(EVENT_TYPE_MAP))

    @classmethod
    def from_settings(
        cls, *, field_paths_json: str | None = None, type_map_json: str | None = None
    ) -> EventParser:
        """Build from the optional app settings (JSON strings); empty means the defaults."""
        return cls(
            paths=EventFieldPaths.from_json(field_paths_json) if field_paths_json else EventFieldPaths(),
            type_map=type_map_from_json(type_map_json) if type_map_json else dict(EVENT_TYPE_MAP),
        )

    def parse(self, event: Any, *, position: str | None = None) -> CampaignEmailEvent:
        raw = event if isinstance(event, dict) else {"value": event}
        p = self.paths
        raw_type = _text(_first(raw, p.type))
        bounce_type = _text(_first(raw, p.bounce_type))
        event_type = _classify(raw_type, bounce_type, self.type_map)
        return CampaignEmailEvent(
            event_id=_text(_first(raw, p.event_id)) or _fallback_id(raw),
            type=event_type,
            raw_type=raw_type,
            timestamp=parse_timestamp(_first(raw, p.timestamp)),
            external_id=_text(_first(raw, p.external_id)),
            recipient_id=_text(_first(raw, p.recipient_id)),
            campaign_id=_text(_first(raw, p.campaign_id)),
            campaign_label=_text(_first(raw, p.campaign_label)),
            delivery_id=_text(_first(raw, p.delivery_id)),
            delivery_label=_text(_first(raw, p.delivery_label)),
            mirror_page_url=_text(_first(raw, p.mirror_page_url)),
            clicked_url=_text(_first(raw, p.clicked_url)),
            bounce_type=bounce_type,
            bounce_reason=_text(_first(raw, p.bounce_reason)),
            position=position,
            raw=raw,
        )
