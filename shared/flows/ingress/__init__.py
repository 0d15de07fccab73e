"""Ingress: Dynamics tables → Campaign resources. `flow` (the entry points), `pages` (the change-tracking
page pipeline, mark and sweep), `records` (the write protocol for one record), `outcomes` (what becomes of
a record write that does not release a lease: handed off, failed, dead), `order` (where a change stands
among the applied ones), `campaign` (the Campaign side of a write), `common` (what they share)."""

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
