"""The seven scenarios of the benchmark and the naive baseline, each as figures (see `report.Figure`).
`Bench` composes their parts, a module for the scenarios of each stack, on `bench.stacks.Stacks`, and
makes the figures that need more than one lane.
"""

from __future__ import annotations

from bench.concurrency import ConcurrentDeliveries
from bench.events import Events
from bench.main_stack import MainStack
from bench.report import Goal
from bench.resilience import Resilience
from bench.scaleout import ScaleOut
from bench.small_stacks import SmallStacks
from bench.stacks import MIB, Stacks


class Bench(Stacks, MainStack, SmallStacks, Events, Resilience, ConcurrentDeliveries, ScaleOut):
    """One lane of the benchmark: its stacks run one after the other. Lanes run side by side and share
    `figures` and `facts`; `comparisons` derives the figures that need more than one lane."""

    def comparisons(self) -> None:
        o, facts = self.o, self.facts
        small, large = facts.get("small_rss_kib"), facts.get("main_rss_kib")
        if small and large:
            self.figure("2", f"peak RSS at {o.small_contacts:,} contacts", round(small / MIB), "MiB")
            self.figure("2", f"peak RSS at {o.contacts:,} contacts", round(large / MIB), "MiB")
            self.figure(
                "2",
                "peak RSS growth",
                round((large - small) / small * 100, 1),
                "%",
                Goal("<=", 25),
                note=f"pages of {o.page_size:,} rows are streamed; neither side is loaded whole",
            )
        optimised, naive = facts.get("records_per_second"), facts.get("naive_records_per_second")
        if optimised and naive:
            self.figure(
                "B", "initial load ÷ naive baseline", round(optimised / naive, 1), "×", note="records/s ratio"
            )
        resilience = facts.get("resilience_dataverse_requests")
        fault_free = facts.get("fault_free_dataverse_requests")
        if resilience is not None:
            comparable = fault_free is not None and o.resilience_contacts == o.contacts
            self.figure(
                "7",
                "resilience: extra Dataverse calls spent on retries",
                resilience - fault_free if comparable else None,
                "calls",
                note=f"{resilience:,} Dataverse requests in all"
                + (f", {fault_free:,} in the fault-free load of scenario 1" if comparable else "")
                + f"; injected {facts['resilience_dataverse_faults']}; each timer run reads metadata "
                "again and each retried record is read again",
            )
