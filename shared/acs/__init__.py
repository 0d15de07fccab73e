"""Adobe Campaign Standard clients: IMS tokens (`ims`), the REST API (`client`), resource metadata
(`metadata`) and what `acs check` verifies with it (`check`), email events (`events`) and the Adobe I/O
Events journal (`journal`).

Names are imported on first use so that importing the package stays cheap.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ImsTokenProvider": "shared.acs.ims",
    "CampaignClient": "shared.acs.client",
    "JournalReader": "shared.acs.journal",
    "JournalBatch": "shared.acs.journal",
    "CampaignEmailEvent": "shared.acs.events",
    "EmailEventType": "shared.acs.events",
    "EventFieldPaths": "shared.acs.events",
    "EventParser": "shared.acs.events",
    "AmbiguousKeyError": "shared.acs.errors",
    "JournalPositionExpired": "shared.acs.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shared.acs' has no attribute {name!r}")
    return getattr(import_module(module), name)
