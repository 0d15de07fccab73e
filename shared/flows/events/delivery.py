"""One delivery: a list of events taken to the contact timeline, each ending written, parked or dead.

The contact is the event's External ID (the Dynamics contactid) or, with only the Campaign recipient
known, the profile's External ID read from Campaign (cached for the run). Events whose contact does not
exist (yet) are parked in the ledger under `PARKED`, to be retried with backoff and dead-lettered once
they are older than `park_max_age_hours`; an event that cannot be delivered at all is dead-lettered at
once. Every outcome is durable before the delivery returns, so the caller may then move the journal on.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

from shared.d365.odata import is_guid
from shared.flows.contacts import ContactLookup
from shared.flows.events.common import DEAD, FLOW, PARK, PARKED, WRITTEN, DeliveryItem
from shared.flows.events.writer import ActivityWriter
from shared.logs import log_event
from shared.store import FailureBook, LedgerRecord, RecordLedger, RunReport, Verdict
from shared.telemetry.metrics import count_records

log = logging.getLogger(__name__)

# A ledger row's `extra` lives in one Table property (at most 64 KiB of UTF-16).
_MAX_PARKED_EVENT_CHARS = 30_000


class EventDelivery:
    """Takes lists of events (fresh from the journal, or parked ones due for a retry) through contact
    resolution, the existence check and the writes, and records what became of each."""

    def __init__(
        self,
        *,
        contacts: ContactLookup,
        writer: ActivityWriter,
        ledger: RecordLedger,
        failures: FailureBook,
    ) -> None:
        self.contacts = contacts
        self.writer = writer
        self.ledger = ledger
        self.failures = failures

    def deliver(self, items: list[DeliveryItem], report: RunReport, pool: ThreadPoolExecutor) -> list[str]:
        """Resolve, check, write, then record every item's outcome (written, parked or dead); answers
        the outcome of each item, in order."""
        if not items:
            return []
        self._resolve_contacts(items, pool)
        pending = [item for item in items if item.outcome is None]
        existing = self.contacts.existing({item.contact_id for item in pending}, pool)
        for item in pending:
            if item.contact_id not in existing:
                item.settle(PARK, f"contact {item.contact_id} does not exist in Dynamics (yet)")
        self.writer.write([item for item in items if item.outcome is None], pool)
        outcomes = list(pool.map(self._record_outcome, items))
        for name, n in count_records(FLOW, "", outcomes).items():
            report.count(name, n)
        for item in items:
            if item.outcome == WRITTEN:
                report.count(f"activities_{item.event.type.value}")
        return outcomes

    def _resolve_contacts(self, items: list[DeliveryItem], pool: ThreadPoolExecutor) -> None:
        recipients: set[str] = set()
        for item in items:
            external_id = item.event.external_id
            if external_id:
                if is_guid(external_id):
                    item.contact_id = external_id.lower()
                else:
                    item.settle(DEAD, f"External ID {external_id!r} is not a Dynamics contactid (a GUID)")
            elif item.event.recipient_id:
                recipients.add(item.event.recipient_id)
            else:
                item.settle(DEAD, "the event names neither an External ID nor a Campaign recipient")
        ordered = sorted(recipients)
        resolutions = dict(zip(ordered, pool.map(self.contacts.recipient, ordered), strict=True))
        for item in items:
            resolution = resolutions.get(item.event.recipient_id or "") if not item.contact_id else None
            if resolution is None:
                continue
            if resolution.contact_id:
                item.contact_id = resolution.contact_id
            elif resolution.dead:
                item.settle(DEAD, resolution.dead)
            else:
                item.settle(PARK, resolution.park or "recipient not resolved")

    # -- outcomes ----------------------------------------------------------------------------------

    def _record_outcome(self, item: DeliveryItem) -> str:
        """Make an item's outcome durable; answers the report counter to bump."""
        if item.outcome == WRITTEN:
            if item.parked is not None:
                self.ledger.delete(PARKED, item.event.event_id)
            return "written"
        if item.outcome == PARK:
            return self._park(item)
        return self._dead(item)

    def _park(self, item: DeliveryItem) -> str:
        base = item.parked or LedgerRecord(PARKED, item.event.event_id)
        if len(json.dumps(item.event.raw, default=str)) > _MAX_PARKED_EVENT_CHARS:
            item.reason = f"{item.reason}; the event is too large to park for a retry"
            return self._dead(item)
        verdict = self.failures.fail(
            base,
            item.reason or "not delivered",
            payload=item.event.raw,
            changes={
                "target_key": item.contact_id,
                "extra": {"event": item.event.raw, "position": item.event.position},
            },
            error_fields={"type": "EventNotDelivered", **item.error},
        )
        if verdict == Verdict.ALREADY_RECORDED:
            return "already_parked"  # a repeat of an event parked earlier: that row is retried
        if verdict == Verdict.DEAD:
            self._log_dead(item)
            return "dead"
        log_event(
            log,
            logging.DEBUG,
            "events.parked",
            event_id=item.event.event_id,
            contact_id=item.contact_id,
            reason=item.reason,
        )
        return "parked"

    def _dead(self, item: DeliveryItem) -> str:
        base = item.parked or LedgerRecord(PARKED, item.event.event_id)
        error = {"type": "EventNotDelivered", "message": item.reason, **item.error}
        # Parked by an earlier delivery of the same event? The dead letter says what happened anyway.
        self.failures.dead(base, error, payload=item.event.raw, changes={"extra": {}})
        self._log_dead(item)
        return "dead"

    def _log_dead(self, item: DeliveryItem) -> None:
        event = item.event
        log_event(
            log, logging.WARNING, "events.dead", event_id=event.event_id, type=event.type, reason=item.reason
        )
