"""Plausible, reproducible data: profiles to preload and Campaign email events built from stored profiles.

Event body (Campaign does not publish one; this is the emulator's model, a CloudEvents 1.0 envelope as
Adobe I/O Events delivers, with the Campaign fields under `data`):

    {"specversion": "1.0", "id": "<uuid, shared by duplicates>",
     "type": "com.adobe.campaign.standard.email.<send|open|click|bounce>",
     "source": "urn:adobe:campaign:<tenant>", "time": "2026-11-22T10:00:00.000Z",
     "datacontenttype": "application/json",
     "data": {"eventType": "send|open|click|bounce", "timestamp": "<same as time>",
              "profile": {"recipientId": "<profile PKey>", "externalId": "<may be absent>", "email": "..."},
              "campaign": {"id": "OP1001", "label": "..."},
              "delivery": {"id": "DM2001", "label": "...", "subject": "..."},
              "mirrorPageUrl": "https://...",
              "clickedUrl": "https://..."                           (click only),
              "bounce": {"type": "hard", "reason": "...", "category": "..."}   (bounce only: hard bounces)}}

About one event in five leaves out `data.profile.externalId` (as when the profile had none when the
delivery was prepared), so a consumer must resolve `recipientId` through the Campaign API.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any

from .clock import iso_timestamp

EVENT_TYPES = ("send", "open", "click", "bounce")
WITHOUT_EXTERNAL_ID_RATE = 0.2

_FIRST = ("Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Lea", "Marc")
_LAST = ("Martin", "Bernard", "Dubois", "Schmidt", "Rossi", "Garcia", "Smith", "Novak", "Jensen", "Weber")
_CITIES = (
    ("Paris", "FR", "75001"),
    ("Berlin", "DE", "10115"),
    ("Madrid", "ES", "28001"),
    ("Leeds", "GB", "LS1"),
)
_CAMPAIGNS = (
    (
        "OP1001",
        "Spring launch",
        (("DM2001", "Spring launch - announcement"), ("DM2002", "Spring launch - reminder")),
    ),
    ("OP1002", "Loyalty programme", (("DM2003", "Loyalty - welcome"), ("DM2004", "Loyalty - points update"))),
    ("OP1003", "Service follow-up", (("DM2005", "Service - satisfaction survey"),)),
)
_LINKS = (
    "https://www.example.com/offers",
    "https://www.example.com/account",
    "https://www.example.com/stores",
)
_BOUNCES = (
    ("User unknown", "550 5.1.1 The email account that you tried to reach does not exist"),
    ("Invalid domain", "DNS lookup failed: domain does not exist"),
    ("Inactive mailbox", "550 5.2.1 Mailbox disabled"),
)


def fake_profiles(n: int, *, seed: int = 1) -> list[dict[str, Any]]:
    """`n` distinct profiles (unique email and externalId, a GUID like a Dynamics contactid)."""
    rng = random.Random(seed)
    profiles = []
    for i in range(n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, country, zip_code = rng.choice(_CITIES)
        profiles.append(
            {
                "firstName": first,
                "lastName": last,
                "email": f"{first}.{last}.{i}@example.com".lower(),
                "externalId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "birthDate": f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "gender": rng.choice(("male", "female", "unknown")),
                "mobilePhone": f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
                "location": {"city": city, "countryCode": country, "zipCode": zip_code},
                "blackListEmail": rng.random() < 0.05,
            }
        )
    return profiles


def build_events(
    profiles: Sequence[dict[str, Any]],
    n: int,
    *,
    tenant: str,
    now: float,
    types: Sequence[str] = EVENT_TYPES,
    seed: int = 1,
) -> list[dict[str, Any]]:
    """`n` events about randomly chosen profiles, timestamped over the minutes before `now`, oldest first."""
    unknown = set(types) - set(EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types {sorted(unknown)}; expected some of {EVENT_TYPES}")
    if not profiles:
        raise ValueError("no stored profiles to build events from")
    rng = random.Random(seed)
    events = []
    for i in range(n):
        profile = rng.choice(profiles)
        kind = rng.choice(tuple(types))
        campaign_id, campaign_label, deliveries = rng.choice(_CAMPAIGNS)
        delivery_id, delivery_label = rng.choice(deliveries)
        moment = iso_timestamp(now - (n - i) * 2.0 + rng.uniform(0.0, 1.0))
        person = {"recipientId": profile["PKey"], "email": profile.get("email", "")}
        if profile.get("externalId") and rng.random() >= WITHOUT_EXTERNAL_ID_RATE:
            person["externalId"] = profile["externalId"]
        data: dict[str, Any] = {
            "eventType": kind,
            "timestamp": moment,
            "profile": person,
            "campaign": {"id": campaign_id, "label": campaign_label},
            "delivery": {
                "id": delivery_id,
                "label": delivery_label,
                "subject": f"{campaign_label}: news for you",
            },
            "mirrorPageUrl": f"https://{tenant}.campaign.adobe.com/m/{delivery_id}/{rng.getrandbits(64):016x}",
        }
        if kind == "click":
            data["clickedUrl"] = rng.choice(_LINKS)
        if kind == "bounce":
            category, reason = rng.choice(_BOUNCES)
            data["bounce"] = {"type": "hard", "category": category, "reason": reason}
        events.append(
            {
                "specversion": "1.0",
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "type": f"com.adobe.campaign.standard.email.{kind}",
                "source": f"urn:adobe:campaign:{tenant}",
                "time": moment,
                "datacontenttype": "application/json",
                "data": data,
            }
        )
    return events
