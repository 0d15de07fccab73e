"""Which Dynamics contact an email event is about, for `events_push`: a Campaign recipient's External ID
(cached per process, bounded) and whether contacts exist in Dynamics (cached per run)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared.acs.client import CampaignClient
from shared.d365.client import DataverseClient
from shared.d365.odata import is_guid
from shared.errors import AuthenticationError, ServiceError
from shared.flows.timeline import CONTACTS

PROFILE_RESOURCE = "profileAndServicesExt/profile"
# Contact ids per existence query: keeps the URL far below Dataverse's length limit.
_IDS_PER_QUERY = 50
_MAX_KNOWN_CONTACTS = 200_000


@dataclass(frozen=True)
class Resolution:
    """A recipient resolved to a contact id, or why its events park or die."""

    contact_id: str | None = None
    park: str | None = None
    dead: str | None = None


class _LruCache:
    """A bounded, thread-safe map: the least recently used entry goes first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[str, Resolution] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Resolution | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: Resolution) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class ContactLookup:
    def __init__(
        self,
        *,
        dataverse: DataverseClient,
        campaign: CampaignClient,
        key_field: str,
        recipient_cache_size: int,
    ) -> None:
        self.dataverse = dataverse
        self.campaign = campaign
        self.key_field = key_field
        self._recipients = _LruCache(recipient_cache_size)
        self._known_contacts: set[str] = set()

    def clear(self) -> None:
        """At the start of a run: recipients and contacts are looked up afresh."""
        self._recipients.clear()
        self._known_contacts.clear()

    def recipient(self, pkey: str) -> Resolution:
        """The contactid behind a Campaign recipient (profile PKey): its External ID."""
        cached = self._recipients.get(pkey)
        if cached is not None:
            return cached
        try:
            profile = self.campaign.get(PROFILE_RESOURCE, pkey)
        except AuthenticationError:
            raise
        except ServiceError as exc:
            if exc.retriable:  # not cached: the next attempt may succeed
                return Resolution(park=f"looking up Campaign recipient {pkey} failed: {exc}")
            resolution = Resolution(dead=f"Campaign refused the look-up of recipient {pkey}: {exc}")
        else:
            key_field = self.key_field
            external_id = (profile or {}).get(key_field)
            if profile is None:
                resolution = Resolution(dead=f"Campaign recipient {pkey} does not exist")
            elif not external_id:
                resolution = Resolution(park=f"Campaign recipient {pkey} has no {key_field} (yet)")
            elif not is_guid(str(external_id)):
                resolution = Resolution(
                    dead=f"{key_field} {external_id!r} of recipient {pkey} is not a Dynamics contactid"
                )
            else:
                resolution = Resolution(contact_id=str(external_id).lower())
        self._recipients.put(pkey, resolution)
        return resolution

    def existing(self, ids: set[str | None], pool: ThreadPoolExecutor) -> set[str]:
        """Which of these contacts exist: one `$filter` query per few dozen ids not seen this run."""
        wanted = {i for i in ids if i}
        unknown = sorted(wanted - self._known_contacts)
        chunks = [unknown[n : n + _IDS_PER_QUERY] for n in range(0, len(unknown), _IDS_PER_QUERY)]
        if len(self._known_contacts) > _MAX_KNOWN_CONTACTS:
            self._known_contacts.clear()
        for found in pool.map(self._query_contacts, chunks):
            self._known_contacts.update(found)
        return wanted & self._known_contacts

    def _query_contacts(self, ids: list[str]) -> set[str]:
        condition = " or ".join(f"contactid eq {contact_id}" for contact_id in ids)
        return {
            row["contactid"].lower()
            for page in self.dataverse.iter_pages(CONTACTS, select=["contactid"], filter=condition)
            for row in page.rows
        }
