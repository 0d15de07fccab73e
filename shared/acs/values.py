"""Campaign's values as the sync compares them with what it would write: nested bodies as field paths,
nulls stored as the field's default, timestamps in Campaign's own format. The dry run and `verify`
judge "would this write change the record?" with the same rules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def parse_campaign_time(value: Any) -> datetime | None:
    """Campaign renders `2026-11-22 10:00:00.000Z`; ISO 8601 is accepted too."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip().replace(" ", "T").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FieldChange:
    field: str  # Campaign field path, e.g. location.city
    old: Any  # None: absent from Campaign
    new: Any


def flatten(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """A nested Campaign body as (field path, value) pairs: `{"location": {"city": x}}` → `location.city`."""
    for name, value in values.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def lookup(record: dict[str, Any], path: str) -> Any:
    """The value at a field path of a Campaign record (None when absent)."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def same(new: Any, old: Any) -> bool:
    """Would writing `new` leave `old` as it is? Campaign stores a null as the field's default (empty
    text, false, 0, or an enumeration's 'unknown') and renders timestamps its own way."""
    if new is None:
        return old is None or old in ("", "unknown") or (not isinstance(old, str) and old == 0)
    if isinstance(new, bool) or isinstance(old, bool):
        return new is old
    if isinstance(new, int | float) and isinstance(old, int | float):
        return float(new) == float(old)
    if isinstance(new, str) and isinstance(old, str) and new != old and len(new) > 10 and len(old) > 10:
        new_time, old_time = parse_campaign_time(new), parse_campaign_time(old)
        return new_time is not None and new_time == old_time
    return new == old


def diff(body: dict[str, Any], current: dict[str, Any] | None) -> list[FieldChange]:
    """The fields of `body` that would change `current` (every non-empty field when there is no current
    record)."""
    changes = []
    for path, new in flatten(body):
        old = None if current is None else lookup(current, path)
        if not same(new, old):
            changes.append(FieldChange(path, old, new))
    return changes
