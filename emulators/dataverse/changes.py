"""Who writes and what a write fires: the `Caller` of a request and the `ChangeEvent` of each committed
Create/Update/Delete, shared by the request side (records, `$batch`) and the webhook side (steps,
execution contexts, delivery)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .odata import new_guid

SYSTEM_TARGET_COLUMNS = ("modifiedon", "modifiedby", "modifiedonbehalfby")


@dataclass
class ChangeEvent:
    """One Create/Update/Delete, as a plug-in step would see it."""

    message: str
    table: str
    row_id: str
    target: dict  # Create: the new row; Update: submitted + computed + system columns; Delete: {}
    pre: dict | None
    post: dict | None
    user_id: str
    correlation_id: str
    operation_id: str = field(default_factory=new_guid)
    # The row's `versionnumber` once this Create/Update committed (later writes get other versions; the
    # stored row dicts are replaced, never changed in place, so `post` keeps this version too).
    version: int | None = None


@dataclass
class Caller:
    """Who is writing (the application user of a token, or a person in the UI) and the request's ids."""

    user_id: str
    correlation_id: str = field(default_factory=new_guid)
    content_ids: dict[str, tuple[str, str]] | None = None  # batch change set `$n` references
