"""Ingress: Dynamics tables → Campaign resources. `flow` (the entry points), `pages` (the change-tracking
page pipeline), `records` (the write protocol for one record), `common` (what they share)."""

from shared.flows.ingress.common import FLOW, REPLAY_FLOW, IngressOptions, MappingContext, Mode, Outcome
from shared.flows.ingress.flow import IngressFlow, ReplayRefused

__all__ = [
    "FLOW",
    "REPLAY_FLOW",
    "IngressFlow",
    "IngressOptions",
    "MappingContext",
    "Mode",
    "Outcome",
    "ReplayRefused",
]
