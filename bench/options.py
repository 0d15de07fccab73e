"""The benchmark's sizes and settings, every one a `python -m bench` option (`Options`), and the words
that describe them above the printed table and in the READMEs (`Options.lines`)."""

from __future__ import annotations

from dataclasses import dataclass

# Adobe's schedule for opt-outs is daily; ours is the app setting's default.
DEFAULT_OPTOUT_PERIOD_SECONDS = 300


@dataclass
class Options:
    contacts: int = 100_000
    small_contacts: int = 10_000
    rate: int = 200  # R: Campaign requests per second (emulator limit, and the client's setting)
    latency_ms: float = 20.0
    # The sync process paces a little under the licence, as docs/operations.md advises: network jitter
    # bunches evenly paced requests, and each one over the limit costs a whole 1 s Retry-After.
    client_rate_fraction: float = 0.98
    campaign_concurrency: int = 16  # ACS_MAX_CONCURRENCY of the sync process
    page_size: int = 5000
    changed_percent: float = 1.0
    webhooks: int = 5000
    senders: int = 50
    concurrency_contacts: int = 1000
    scaleout_contacts: int = 8000
    scaleout_webhooks: int = 1000
    events: int = 50_000
    events_contacts: int = 5000
    protection_requests: int = 6000
    protection_window_seconds: float = 300.0
    protection_factor: float = 10.0
    optout_changes: int = 100
    resilience_contacts: int = 100_000
    # Its figures are about correctness: a higher limit lets it finish beside lane "main" (see README).
    resilience_rate: int = 400
    baseline_contacts: int = 300
    seed: int = 2026

    def client_rate(self, limit: int) -> int:
        return int(limit * self.client_rate_fraction)

    @property
    def protection_window(self) -> float:
        return self.protection_window_seconds / self.protection_factor

    @property
    def protection_rate(self) -> float:
        return self.protection_requests / self.protection_window

    def lines(self) -> list[str]:
        o = self
        return [
            f"Campaign emulator: R = {o.rate} requests/s (sliding 1 s window), {o.latency_ms:g} ms latency "
            f"per call; sync process: ACS_REQUESTS_PER_SECOND = {o.client_rate(o.rate)}, "
            f"ACS_MAX_CONCURRENCY = {o.campaign_concurrency} (ingress pool {2 * o.campaign_concurrency}), "
            f"D365_PAGE_SIZE = {o.page_size}, shipped sync_config.json (11 fields, 4 opt-out pairs, two-way)",
            "Otherwise the local stack's settings: Azurite in memory, D365_REQUESTS_PER_SECOND 1000, HTTP "
            "retry backoff 0.02 s doubling to 0.5 s (production: 0.5 s to 30 s; Retry-After always wins), "
            "failed records retried after 1 s doubling; FUNCTION_TIME_BUDGET_SECONDS 3600 so that one run "
            "carries a whole load",
            f"1 initial load: {o.contacts:,} contacts{_scaled(o.contacts, 100_000)}; "
            f"2 memory: {o.small_contacts:,} vs {o.contacts:,} contacts; "
            f"3 steady state: {o.changed_percent:g}% changed + {o.changed_percent:g}% touched in unmapped "
            "columns",
            f"4 webhooks: {o.webhooks:,}{_scaled(o.webhooks, 5000)} through two local functions host "
            f"processes (scaled out, one Campaign budget) from {o.senders} concurrent senders, on the "
            f"{o.contacts:,}-contact stack after 1 and 3; "
            f"concurrent out-of-order deliveries: {o.concurrency_contacts:,} contacts × 3 versions, two "
            "host processes",
            f"5 events: {o.events:,}{_scaled(o.events, 50_000)} about "
            f"{o.events_contacts:,} contacts with their Campaign profiles; Dataverse service "
            f"protection {o.protection_requests:,} requests / {o.protection_window:g} s (6,000 / 300 s "
            f"scaled down ×{o.protection_factor:g} in time = {o.protection_rate:,.0f} requests/s)",
            f"6 opt-out: {o.optout_changes} Campaign opt-outs, default schedule every "
            f"{DEFAULT_OPTOUT_PERIOD_SECONDS // 60} min",
            f"7 resilience: {o.resilience_contacts:,} contacts{_scaled(o.resilience_contacts, 100_000)}, "
            f"10% 503, 5% 429, 1% dropped connections on both APIs, Campaign limit {o.resilience_rate} "
            f"requests/s (sync process {o.client_rate(o.resilience_rate)})",
            f"naive baseline: {o.baseline_contacts:,} contacts, one Campaign call at a time, look-up before "
            "every write",
            f"8 scale-out: 3 host processes taking a burst of {o.scaleout_webhooks:,} webhooks while an "
            f"initial load of {o.scaleout_contacts:,} contacts runs; ACS_TOTAL_REQUESTS_PER_SECOND = "
            f"{o.client_rate(o.rate)} shared through Table Storage",
        ]


def _scaled(size: int, issue: int) -> str:
    return "" if size == issue else f" (issue: {issue:,} → factor {issue / size:g})"
