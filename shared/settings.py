"""Every app setting the integration reads, in one typed model.

The setting names are the field names in upper case (`D365_ORG_URL` ↔ `d365_org_url`). Importing this
module validates the process environment, so a Function App with a missing or bad setting fails at
start-up with ONE message that names every bad setting and why (`SettingsError`). Secrets are
`SecretStr`: they print as `**********` and only the clients unwrap them.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.http import RetryPolicy

_NCRONTAB = re.compile(r"^\s*(\S+\s+){5}\S+\s*$")
_TRUE = {"1", "true", "yes", "on"}

OptOutDirection = Literal["disabled", "d365_to_acs", "acs_to_d365", "bidirectional"]
# How the app signs in to Dataverse (shared/d365/auth.py). azure_cli: an operator's `az login`, for the
# operator commands on a workstation of a deployment that uses managed_identity_federation.
D365Auth = Literal["client_secret", "certificate", "managed_identity_federation", "azure_cli"]
_D365_AUTH_NEEDS = {
    "client_secret": "D365_CLIENT_SECRET",
    "certificate": "D365_CLIENT_CERTIFICATE_PATH",
    "managed_identity_federation": "D365_MANAGED_IDENTITY_CLIENT_ID",
}


def _d365_auth(explicit: str | None, certificate_path: str | None) -> str:
    """D365_AUTH, or what the credentials given imply (the settings before D365_AUTH existed)."""
    return explicit or ("certificate" if certificate_path else "client_secret")


class SettingsError(ValueError):
    """One or more app settings are missing or invalid; the message lists all of them."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {name}: {why}" for name, why in problems)
        super().__init__(f"Invalid app settings ({len(problems)} problem(s)):\n{lines}")


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value.rstrip("/")


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **sources):
        # `load_settings` hands over the (upper-cased) environment itself, so one code path reads it.
        return (init_settings,)

    # --- Dynamics 365 / Dataverse -------------------------------------------------------------
    d365_org_url: str = Field(description="https://<org>.crm.dynamics.com")
    d365_tenant_id: str
    d365_client_id: str
    d365_auth: D365Auth | None = Field(
        None, description="default: certificate when D365_CLIENT_CERTIFICATE_PATH is set, else client_secret"
    )
    d365_client_secret: SecretStr | None = None
    d365_client_certificate_path: str | None = None
    d365_client_certificate_thumbprint: str | None = None
    d365_managed_identity_client_id: str | None = Field(
        None, description="the user-assigned identity the app registration trusts (federated credential)"
    )
    d365_authority_host: str = "https://login.microsoftonline.com"
    d365_api_version: str = "v9.2"
    d365_ca_bundle: str | None = Field(None, description="dev/test only: CA of the Dataverse emulator")
    d365_requests_per_second: float = Field(15.0, gt=0, description="6,000 requests / 300 s = 20/s per user")
    d365_total_requests_per_second: float | None = Field(
        None, gt=0, description="for the whole deployment, shared by its instances; wins over the line above"
    )
    d365_max_concurrency: int = Field(8, ge=1, le=52, description="Dataverse allows 52 concurrent requests")
    d365_page_size: int = Field(5000, ge=1, le=5000)
    d365_batch_size: int = Field(100, ge=1, le=1000)
    d365_timeout_seconds: float = Field(60.0, gt=0)

    # --- Adobe Campaign Standard + IMS --------------------------------------------------------
    acs_tenant: str = Field(description="Campaign tenant id, e.g. acme or acme-mkt-stage")
    acs_base_url: str | None = Field(None, description="default https://mc.adobe.io/<tenant>/campaign")
    acs_ims_token_url: str = "https://ims-na1.adobelogin.com/ims/token/v3"
    acs_client_id: str
    acs_client_secret: SecretStr
    # adobeio_api: the I/O Events journal (email events) needs it.
    acs_scopes: str = "openid,AdobeID,campaign_sdk,additional_info.projectedProductContext,adobeio_api"
    acs_requests_per_second: float = Field(20.0, gt=0, description="one instance's pace, from the licence")
    acs_total_requests_per_second: float | None = Field(
        None,
        gt=0,
        description="the licence's rate for the whole deployment, shared by its instances "
        "through Table Storage (shared/store/budget.py); while set, ACS_REQUESTS_PER_SECOND is not used",
    )
    acs_max_concurrency: int = Field(4, ge=1, le=64)
    acs_page_size: int = Field(1000, ge=1, le=1000)
    acs_timeout_seconds: float = Field(60.0, gt=0)
    acs_changed_since_filter: str = "byLastModifiedSince"

    # --- Adobe I/O Events journal (Campaign email events) -----------------------------------
    acs_events_journal_url: str | None = None
    acs_ims_org_id: str | None = None
    acs_events_page_limit: int = Field(100, ge=1, le=1000)
    acs_event_field_paths: str | None = Field(None, description="JSON override of the event field paths")

    # --- State storage (checkpoints, ledger, dead letters, run reports) -----------------------
    state_storage_connection_string: SecretStr | None = None
    state_storage_account_name: str | None = Field(None, description="managed identity, no keys")
    state_table_prefix: str = Field("acsd365", pattern=r"^[A-Za-z][A-Za-z0-9]{0,40}$")
    state_container: str = Field("acsd365-state", pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

    # --- Schedules (NCRONTAB, bound in function.json as %NAME%) ------------------------------
    contacts_sync_schedule: str = "0 */5 * * * *"
    events_push_schedule: str = "0 */5 * * * *"
    optout_sync_schedule: str = "0 */5 * * * *"
    verify_schedule: str = Field("0 30 2 * * *", description="the drift check: daily, 02:30 UTC")

    # --- Retries of every HTTP call (429/5xx/connection errors; Retry-After always wins) ----------
    http_max_retries: int = Field(6, ge=0, le=20)
    http_backoff_seconds: float = Field(0.5, ge=0, description="first backoff; doubles per attempt")
    http_backoff_max_seconds: float = Field(30.0, ge=0)

    # --- Flow tuning ---------------------------------------------------------------------------
    function_time_budget_seconds: int = Field(480, ge=30, description="stop cleanly before functionTimeout")
    maximum_instance_count: int = Field(
        4,
        ge=1,
        description="the plan's maximumInstanceCount: a shared budget's share is total ÷ this "
        "while Table Storage cannot be reached",
    )
    retry_max_attempts: int = Field(8, ge=1, le=100)
    retry_base_delay_seconds: int = Field(60, ge=1)
    replay_max_rows: int = Field(2_000_000, ge=1)
    events_park_max_age_hours: int = Field(72, ge=1)

    # --- Feature switches ----------------------------------------------------------------------
    contacts_sync_enabled: bool = True
    webhook_enabled: bool = True
    events_push_enabled: bool = True
    optout_sync_enabled: bool = True
    verify_sync_enabled: bool = Field(False, description="the daily drift check with repair (verify_sync)")
    optout_direction: OptOutDirection | None = Field(None, description="overrides the sync config")
    event_types: str | None = Field(None, description="comma list overriding the sync config's toggles")

    # --- Webhook ---------------------------------------------------------------------------------
    webhook_shared_secret: SecretStr | None = None
    webhook_secret_header: str = "x-acsd365-secret"
    webhook_max_body_bytes: int = Field(1_048_576, ge=1024)

    # --- Sync configuration ----------------------------------------------------------------------
    sync_config: str | None = Field(None, description="inline JSON; wins over SYNC_CONFIG_PATH")
    sync_config_path: str = "sync_config.json"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    _validate_urls = field_validator(
        "d365_org_url", "d365_authority_host", "acs_base_url", "acs_ims_token_url", "acs_events_journal_url"
    )(lambda value: value if value is None else _https_url(value))

    @field_validator(
        "d365_client_secret", "acs_client_secret", "state_storage_connection_string", "webhook_shared_secret"
    )
    @classmethod
    def _resolved(cls, value: SecretStr | None) -> SecretStr | None:
        # App Service passes a Key Vault reference it cannot resolve on as its literal text: taken as the
        # secret, the webhook would accept that guessable text as its shared secret.
        if value is not None and value.get_secret_value().startswith("@Microsoft.KeyVault("):
            raise ValueError(
                "an unresolved Key Vault reference: the secret is missing from the vault or the app's "
                "identity may not read it yet (docs/deploy.md)"
            )
        return value

    @field_validator(
        "contacts_sync_schedule", "events_push_schedule", "optout_sync_schedule", "verify_schedule"
    )
    @classmethod
    def _ncrontab(cls, value: str) -> str:
        if not _NCRONTAB.match(value) or not croniter.is_valid(value, second_at_beginning=True):
            raise ValueError("must be an NCRONTAB expression with 6 valid fields, e.g. '0 */5 * * * *'")
        return value

    @field_validator("event_types")
    @classmethod
    def _event_types(cls, value: str | None) -> str | None:
        if value is None:
            return None
        unknown = {t.strip() for t in value.split(",") if t.strip()} - {"send", "open", "click", "bounce"}
        if unknown:
            raise ValueError(f"unknown event type(s) {sorted(unknown)}; use send, open, click, bounce")
        return value

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            total=self.http_max_retries,
            backoff_factor=self.http_backoff_seconds,
            backoff_max=self.http_backoff_max_seconds,
        )

    @property
    def campaign_base_url(self) -> str:
        return self.acs_base_url or f"https://mc.adobe.io/{self.acs_tenant}/campaign"

    @property
    def d365_authority(self) -> str:
        return f"{self.d365_authority_host}/{self.d365_tenant_id}"

    @property
    def d365_auth_method(self) -> str:
        return _d365_auth(self.d365_auth, self.d365_client_certificate_path)

    @property
    def d365_scope(self) -> str:
        return f"{self.d365_org_url}/.default"

    @property
    def acs_scope_list(self) -> list[str]:
        return [s.strip() for s in self.acs_scopes.split(",") if s.strip()]

    @property
    def enabled_event_types(self) -> frozenset[str] | None:
        if self.event_types is None:
            return None
        return frozenset(t.strip() for t in self.event_types.split(",") if t.strip())


def _missing_together(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Rules that span several settings; checked on the raw values so every problem is reported at once."""

    def has(name: str) -> bool:
        return bool(env.get(name, "").strip())

    problems = []
    auth = _d365_auth(env.get("D365_AUTH", "").strip(), env.get("D365_CLIENT_CERTIFICATE_PATH", "").strip())
    needed = _D365_AUTH_NEEDS.get(auth)  # an unknown D365_AUTH is reported by the model
    if needed and not has(needed):
        why = (
            f"missing (required while D365_AUTH is {auth})"
            if has("D365_AUTH")
            else "missing (or set D365_CLIENT_CERTIFICATE_PATH, or D365_AUTH=managed_identity_federation)"
        )
        problems.append((needed, why))
    if not (has("STATE_STORAGE_CONNECTION_STRING") or has("STATE_STORAGE_ACCOUNT_NAME")):
        problems.append(
            ("STATE_STORAGE_ACCOUNT_NAME", "missing (or set STATE_STORAGE_CONNECTION_STRING for local dev)")
        )
    if env.get("EVENTS_PUSH_ENABLED", "true").strip().lower() in _TRUE:
        for name in ("ACS_EVENTS_JOURNAL_URL", "ACS_IMS_ORG_ID"):
            if not has(name):
                problems.append((name, "missing (required while EVENTS_PUSH_ENABLED is true)"))
    return problems


def load_settings(environ: Mapping[str, str] | None = None) -> AppSettings:
    """Validate `environ` (default: the process environment) into `AppSettings` or raise `SettingsError`."""
    source = os.environ if environ is None else environ
    env = {key.upper(): value for key, value in source.items()}
    values = {name: env[name.upper()] for name in AppSettings.model_fields if name.upper() in env}
    problems: list[tuple[str, str]] = []
    settings = None
    try:
        settings = AppSettings(**values)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
            why = "missing" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
            problems.append((name, why))
    problems += [p for p in _missing_together(env) if p[0] not in {name for name, _ in problems}]
    if problems:
        raise SettingsError(sorted(problems))
    assert settings is not None
    return settings


@functools.cache
def get_settings() -> AppSettings:
    """The process-wide settings, validated once (tests call `get_settings.cache_clear()`)."""
    return load_settings()


# Fail at start-up, not on the first timer tick: the Functions host imports this module first.
get_settings()
