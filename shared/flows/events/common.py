"""What the events modules share: the names of the flow's durable state (its reports and checkpoint, the
journal stream, the ledger mapping of parked events), and the item one event travels as through a
delivery, with the outcome it settles on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.acs.events import CampaignEmailEvent
from shared.flows import names
from shared.store import LedgerRecord

FLOW = names.EVENTS_PUSH
JOURNAL_STREAM = "journal"
PARKED = "events"  # ledger mapping (and dead-letter mapping) of events waiting for their contact

WRITTEN, PARK, DEAD = "written", "park", "dead"


@dataclass
class DeliveryItem:
    """One event on its way: the contact it resolved to, its outcome, and its ledger row when retried."""

    event: CampaignEmailEvent
    parked: LedgerRecord | None = None
    contact_id: str | None = None
    outcome: str | None = None
    reason: str | None = None
    error: dict[str, Any] = field(default_factory=dict)

    def settle(self, outcome: str, reason: str, **error: Any) -> None:
        # A dead verdict is final; a park never overrides it.
        if self.outcome == DEAD:
            return
        self.outcome, self.reason, self.error = outcome, reason, error
