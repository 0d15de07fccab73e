"""OData URL pieces for the Dataverse Web API: record paths (by id or alternate key), query strings,
Prefer values and the id inside an `OData-EntityId` header."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

MAX_PAGE_SIZE = 5000
FORMATTED_VALUES = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
TRACK_CHANGES = "odata.track-changes"
# With `$count=true`: whether there are more rows than the 5,000 Dataverse counts.
COUNT_ANNOTATIONS = (
    'odata.include-annotations="Microsoft.Dynamics.CRM.totalrecordcount,'
    'Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"'
)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TRAILING_GUID = re.compile(
    r"\(([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\)$"
)

RecordKey = Mapping[str, Any] | str | uuid.UUID


def is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


def key_literal(value: Any) -> str:
    """An OData literal for an alternate-key value: strings quoted (inner quotes doubled) and URL-encoded;
    numbers, booleans and `uuid.UUID` values bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        # Quotes stay literal (they delimit the value); everything else that could end the path segment
        # or change its meaning (/ ? # & % + space, non-ASCII) is percent-encoded.
        return "'" + quote(value.replace("'", "''"), safe="'") + "'"
    raise TypeError(f"unsupported key value type {type(value).__name__}")


def record_path(entity_set: str, key: RecordKey) -> str:
    """`contacts(<guid>)` for a primary key, `contacts(emailaddress1='a%40b.com')` for an alternate key."""
    if isinstance(key, Mapping):
        if not key:
            raise ValueError("an alternate key needs at least one column")
        predicate = ",".join(f"{column}={key_literal(value)}" for column, value in key.items())
    else:
        predicate = str(key)
        if not is_guid(predicate):
            raise ValueError(f"{predicate!r} is not a GUID; pass a dict for an alternate key")
    return f"{entity_set}({predicate})"


def columns(select: str | Iterable[str] | None) -> list[str]:
    if select is None:
        return []
    if isinstance(select, str):
        return [c.strip() for c in select.split(",") if c.strip()]
    return list(select)


def query_string(
    *,
    select: str | Iterable[str] | None = None,
    filter: str | None = None,
    orderby: str | None = None,
    count: bool = False,
) -> str:
    options = []
    if select_columns := columns(select):
        options.append("$select=" + ",".join(select_columns))
    if filter:
        options.append("$filter=" + quote(filter, safe="(),'*:/"))
    if orderby:
        options.append("$orderby=" + quote(orderby, safe=","))
    if count:
        options.append("$count=true")
    return "?" + "&".join(options) if options else ""


def max_page_size(page_size: int) -> str:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    return f"odata.maxpagesize={page_size}"


def id_from_entity_id(entity_id: str | None) -> str | None:
    """The GUID of `.../contacts(<guid>)`; None when absent or when the URL names an alternate key."""
    if not entity_id:
        return None
    match = _TRAILING_GUID.search(entity_id.strip())
    return match.group(1).lower() if match else None
