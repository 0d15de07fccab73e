"""Egress: Campaign email events → activities on the Dynamics contact timeline. `flow` (the `events_push`
timer and the replay of one event: parked events, then the journal), `delivery` (one list of events:
contacts resolved and checked, outcomes made durable, parking and dead letters), `writer` (the Dataverse
side: activity tables and the `$batch` upserts), `common` (what they share)."""

from shared.flows.events.common import FLOW, JOURNAL_STREAM, PARKED
from shared.flows.events.flow import EventsFlow, EventsOptions

__all__ = ["FLOW", "JOURNAL_STREAM", "PARKED", "EventsFlow", "EventsOptions"]
