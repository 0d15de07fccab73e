"""The composition root: builds clients, stores and flows from `AppSettings` once per process (the
Functions host keeps the worker alive between invocations, so tokens, pools and metadata are reused).
Function folders call one method here and map its result to their trigger's answer."""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from shared.acs.client import CampaignClient
from shared.acs.events import EventParser
from shared.acs.ims import ImsTokenProvider
from shared.acs.journal import JournalReader
from shared.backlog import record_lag
from shared.d365.auth import AzureIdentityTokenProvider, DataverseTokenProvider
from shared.d365.client import DataverseClient
from shared.flows.events import EventsFlow, EventsOptions
from shared.flows.ingress import IngressFlow, IngressOptions
from shared.flows.optout import OptOutFlow, OptOutOptions, OptOutReconciler
from shared.flows.verify import FLOW as VERIFY_FLOW
from shared.flows.verify import Verifier, VerifyOptions
from shared.flows.webhook import WebhookEndpoint, WebhookResponse
from shared.logs import log_event
from shared.mapping.model import SyncConfig, load_sync_config
from shared.settings import AppSettings, get_settings
from shared.store import RunReport, StateStore
from shared.store.budget import SharedBudget
from shared.telemetry import metrics
from shared.telemetry.catalog import RUNS
from shared.telemetry.setup import configure_telemetry

log = logging.getLogger(__name__)
APP_ROOT = Path(__file__).resolve().parents[1]


class App:
    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings

    # -- building blocks ---------------------------------------------------------------------------

    @cached_property
    def config(self) -> SyncConfig:
        s = self.settings
        return load_sync_config(inline=s.sync_config, path=s.sync_config_path, base_dir=APP_ROOT)

    @cached_property
    def store(self) -> StateStore:
        return StateStore.from_settings(self.settings)

    def _dataverse_tokens(self) -> DataverseTokenProvider | AzureIdentityTokenProvider:
        """The token provider D365_AUTH names (shared/d365/auth.py)."""
        s = self.settings
        method = s.d365_auth_method
        if method == "managed_identity_federation":
            return AzureIdentityTokenProvider.managed_identity_federation(
                tenant_id=s.d365_tenant_id,
                client_id=s.d365_client_id,
                managed_identity_client_id=s.d365_managed_identity_client_id or "",
                scope=s.d365_scope,
                authority_host=s.d365_authority_host,
                ca_bundle=s.d365_ca_bundle,
            )
        if method == "azure_cli":
            return AzureIdentityTokenProvider.azure_cli(tenant_id=s.d365_tenant_id, scope=s.d365_scope)
        certificate = None
        if method == "certificate":
            certificate = {
                "private_key": Path(s.d365_client_certificate_path or "").read_text(),
                "thumbprint": s.d365_client_certificate_thumbprint,
            }
        return DataverseTokenProvider(
            authority=s.d365_authority,
            client_id=s.d365_client_id,
            client_secret=None if certificate else s.d365_client_secret,
            certificate=certificate,
            scope=s.d365_scope,
            ca_bundle=s.d365_ca_bundle,
        )

    def _shared_rate(self, api: str, total_per_second: float | None) -> SharedBudget | None:
        """The deployment's budget for one API, shared with the other instances, when one is set."""
        if total_per_second is None:
            return None
        return SharedBudget(
            self.store.budgets,
            api=api,
            total_per_second=total_per_second,
            max_instances=self.settings.maximum_instance_count,
        )

    @cached_property
    def dataverse(self) -> DataverseClient:
        s = self.settings
        return DataverseClient(
            org_url=s.d365_org_url,
            token_provider=self._dataverse_tokens(),
            api_version=s.d365_api_version,
            timeout=(5.0, s.d365_timeout_seconds),
            requests_per_second=s.d365_requests_per_second,
            shared_rate=self._shared_rate("dataverse", s.d365_total_requests_per_second),
            max_concurrency=s.d365_max_concurrency,
            retry=s.retry_policy,
            ca_bundle=s.d365_ca_bundle,
        )

    @cached_property
    def ims(self) -> ImsTokenProvider:
        s = self.settings
        return ImsTokenProvider(
            token_url=s.acs_ims_token_url,
            client_id=s.acs_client_id,
            client_secret=s.acs_client_secret,
            scopes=s.acs_scope_list,
            retry=s.retry_policy,
        )

    @cached_property
    def campaign(self) -> CampaignClient:
        s = self.settings
        return CampaignClient(
            base_url=s.campaign_base_url,
            client_id=s.acs_client_id,
            token_provider=self.ims,
            timeout=(5.0, s.acs_timeout_seconds),
            requests_per_second=s.acs_requests_per_second,
            shared_rate=self._shared_rate("campaign", s.acs_total_requests_per_second),
            max_concurrency=s.acs_max_concurrency,
            retry=s.retry_policy,
        )

    @cached_property
    def optout_reconciler(self) -> OptOutReconciler:
        return OptOutReconciler(
            config=self.config,
            dataverse=self.dataverse,
            campaign=self.campaign,
            store=self.store,
            direction=self.settings.optout_direction,
        )

    @cached_property
    def optout(self) -> OptOutFlow:
        s = self.settings
        return OptOutFlow(
            reconciler=self.optout_reconciler,
            store=self.store,
            options=OptOutOptions(
                time_budget_seconds=s.function_time_budget_seconds,
                page_size=s.acs_page_size,
                batch_size=s.d365_batch_size,
                changed_since_filter=s.acs_changed_since_filter,
            ),
        )

    @cached_property
    def ingress(self) -> IngressFlow:
        s = self.settings
        return IngressFlow(
            config=self.config,
            dataverse=self.dataverse,
            campaign=self.campaign,
            store=self.store,
            options=IngressOptions(
                page_size=s.d365_page_size,
                time_budget_seconds=s.function_time_budget_seconds,
                retry_max_attempts=s.retry_max_attempts,
                retry_base_delay_seconds=s.retry_base_delay_seconds,
                replay_max_rows=s.replay_max_rows,
                # Ledger I/O overlaps Campaign calls; Campaign concurrency itself stays capped by its client.
                workers=2 * s.acs_max_concurrency,
            ),
            optout=self.optout_reconciler,
        )

    @cached_property
    def verifier(self) -> Verifier:
        s = self.settings
        return Verifier(
            self.ingress,
            VerifyOptions(
                dynamics_page_size=s.d365_page_size,
                campaign_page_size=s.acs_page_size,
                workers=2 * s.acs_max_concurrency,  # as the ingress: ledger I/O overlaps Campaign calls
                time_budget_seconds=s.function_time_budget_seconds,
            ),
        )

    @cached_property
    def events(self) -> EventsFlow:
        s = self.settings
        if not (s.acs_events_journal_url and s.acs_ims_org_id):
            raise ValueError("ACS_EVENTS_JOURNAL_URL and ACS_IMS_ORG_ID are required by events_push")
        journal = JournalReader(
            journal_url=s.acs_events_journal_url,
            client_id=s.acs_client_id,
            org_id=s.acs_ims_org_id,
            token_provider=self.ims,
            limit=s.acs_events_page_limit,
            timeout=(5.0, s.acs_timeout_seconds),
            parser=EventParser.from_settings(field_paths_json=s.acs_event_field_paths),
        )
        return EventsFlow(
            config=self.config,
            dataverse=self.dataverse,
            campaign=self.campaign,
            journal=journal,
            store=self.store,
            options=EventsOptions(
                batch_size=s.d365_batch_size,
                workers=s.d365_max_concurrency,
                time_budget_seconds=s.function_time_budget_seconds,
                park_max_age_hours=s.events_park_max_age_hours,
                retry_base_delay_seconds=s.retry_base_delay_seconds,
                enabled_types=s.enabled_event_types,
            ),
        )

    @cached_property
    def webhook_endpoint(self) -> WebhookEndpoint:
        s = self.settings
        return WebhookEndpoint(
            # Lazy: a request rejected for its shape or key never builds clients or touches storage.
            handle_change=lambda record: self.ingress.handle_change(record),
            max_body_bytes=s.webhook_max_body_bytes,
            shared_secret=s.webhook_shared_secret.get_secret_value() if s.webhook_shared_secret else None,
            secret_header=s.webhook_secret_header,
        )

    # -- what the functions call ---------------------------------------------------------------------

    def _timer(self, flow: str, run: Callable[[], RunReport], *, past_due: bool) -> RunReport:
        switch = f"{flow.upper()}_ENABLED"
        if not getattr(self.settings, switch.lower()):
            log_event(log, logging.INFO, "flow.disabled", flow=flow, setting=switch)
            return RunReport(flow).finish("disabled")
        if past_due:
            log_event(log, logging.WARNING, "flow.past_due", flow=flow)
        try:
            report = run()
        except Exception:
            metrics.count(RUNS, flow=flow, outcome="failed")
            raise
        metrics.count(RUNS, flow=flow, outcome=report.outcome)
        if report.outcome != "failed":
            try:
                record_lag(self, flow)
            except Exception:  # a figure for the dashboard: never the run's failure
                log.warning("lag of %s not measured", flow, exc_info=True)
        return report

    def contacts_sync(self, *, past_due: bool = False) -> RunReport:
        return self._timer("contacts_sync", lambda: self.ingress.run(), past_due=past_due)

    def optout_sync(self, *, past_due: bool = False) -> RunReport:
        return self._timer("optout_sync", lambda: self.optout.run(), past_due=past_due)

    def events_push(self, *, past_due: bool = False) -> RunReport:
        return self._timer("events_push", lambda: self.events.run(), past_due=past_due)

    def verify_sync(self, *, past_due: bool = False) -> RunReport:
        return self._timer(VERIFY_FLOW, lambda: self.verifier.run(), past_due=past_due)

    def webhook(self, method: str, body: bytes, headers: Any) -> WebhookResponse:
        if not self.settings.webhook_enabled:
            # 200: Dataverse must not record failed system jobs while an operator paused the webhook;
            # the change-tracking sweep picks the changes up.
            return WebhookResponse(200, {"outcome": "disabled"})
        return self.webhook_endpoint(method, body, headers)


# A full (generation 2) collection walks every live object. While a load holds two pages of 5,000 rows,
# one stopped every thread for 70-180 ms about every 2 s, and the paced Campaign writers lost those slots
# (docs/scale.md). Nearly all our objects are freed by reference counting, so the few cycles (exceptions,
# SDK pipelines) can wait for a full collection ten times less often: a 20,000-contact load went from
# 0.946-0.955 to 0.955-0.962 of Campaign's limit (0.961-0.962 in four runs of five) and from 2.8-3.1 to
# 2.6-2.9 ms of CPU per record, with the same peak memory (127 MiB).
FULL_COLLECTION_THRESHOLD = 100


def collect_long_lived_garbage_less_often() -> None:
    """Raise the third collector threshold (default 10 young-generation collections) for this process."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_THRESHOLD)


@functools.cache
def get_app() -> App:
    settings = get_settings()
    collect_long_lived_garbage_less_often()
    logging.getLogger("shared").setLevel(settings.log_level)
    # The Azure SDK logs every storage request's and response's headers at INFO (~20 lines per call,
    # shipped to Application Insights under the Functions host's "Function" category); in the local host
    # that was a sixth of the webhook's CPU (py-spy). Its warnings still go through.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    configure_telemetry()
    return App(settings)
