"""A Dynamics 365 / Dataverse emulator for development and tests (never imported by `shared/`).

It serves, over TLS on a free 127.0.0.1 port, an Entra ID stand-in (OpenID discovery and the
client-credentials token endpoint, for MSAL) and the Dataverse Web API: OData queries with paging,
change tracking (delta links, tombstones, token expiry), writes with upsert / alternate keys / ETags,
`$batch` with change sets, table metadata (including creating tables, columns, keys and lookups),
service-protection limits, seeded faults, and webhooks delivered as `RemoteExecutionContext` JSON.
"""

from .emulator import DataverseEmulator

__all__ = ["DataverseEmulator"]
