"""The emulator process of a benchmark: the Dataverse and Campaign emulators (one `Stack`) in their own OS
process, so the sync process competes with them for the CPU as it would with real services' latency.

    python -m bench.server '<options JSON>'

Options: `contacts`, `seed`, `azurite_ports` (of the driver's Azurite), `campaign` and `dataverse`
(constructor options; `faults` as `FaultConfig` fields), `campaign_profiles` (unrelated profiles to
preload, so that Campaign is not empty) and `mirror_profiles` (a Campaign profile for every contact, as a
load would have left them). Prints one JSON line (`{"ready": ...}`), then answers one JSON
line per command line read on stdin: `{"op": name, ...arguments}` → `{"ok": true, "result": ...}` or
`{"ok": false, "error": ...}`. The commands are the `Server` methods without a leading underscore.
Dev/test only.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import traceback
from typing import Any

from emulators.azurite import Azurite
from emulators.campaign.seed import build_events, fake_profiles
from emulators.common import FaultConfig
from emulators.stack import Stack

ACTIVITY_TABLES = ("acs_emailsend", "acs_emailopen", "acs_emailclick", "acs_emailbounce")
# The shipped sync config's contact mapping, as the final-state oracle reads it: Dynamics → Campaign.
TEXT_FIELDS = (
    ("firstname", "firstName"),
    ("lastname", "lastName"),
    ("emailaddress1", "email"),
    ("telephone1", "phone"),
    ("mobilephone", "mobilePhone"),
)
LOCATION_FIELDS = (
    ("address1_line1", "address1"),
    ("address1_line2", "address2"),
    ("address1_city", "city"),
    ("address1_postalcode", "zipCode"),
)
OPTOUT_FLAGS = (
    ("donotemail", "blackListEmail"),
    ("donotphone", "blackListPhone"),
    ("donotpostalmail", "blackListPostalMail"),
    ("donotfax", "blackListFax"),
)
GENDERS = {1: "male", 2: "female"}


def expected_profile(row: dict[str, Any]) -> dict[str, Any]:
    """What the shipped contact mapping should leave in Campaign for one Dynamics contact."""
    expected: dict[str, Any] = {a: row.get(d) or "" for d, a in TEXT_FIELDS}
    expected.update({a: row.get(d) or "" for d, a in LOCATION_FIELDS})
    expected.update({a: bool(row.get(d)) for d, a in OPTOUT_FLAGS})
    expected["gender"] = GENDERS.get(row.get("gendercode"), "unknown")
    expected["birthDate"] = (row.get("birthdate") or "")[:10]
    return expected


def actual_profile(profile: dict[str, Any]) -> dict[str, Any]:
    location = profile.get("location") or {}
    actual: dict[str, Any] = {a: profile.get(a) or "" for _, a in TEXT_FIELDS}
    actual.update({a: location.get(a) or "" for _, a in LOCATION_FIELDS})
    actual.update({a: bool(profile.get(a)) for _, a in OPTOUT_FLAGS})
    actual["gender"] = profile.get("gender") or "unknown"
    actual["birthDate"] = str(profile.get("birthDate") or "")[:10]
    return actual


class Server:
    def __init__(self, options: dict[str, Any]) -> None:
        azurite = Azurite()  # a handle on the driver's running Azurite: never started or stopped here
        azurite.ports = options["azurite_ports"]
        self.stack = Stack(
            dataverse_options=_with_faults(options.get("dataverse", {})),
            campaign_options=_with_faults(options.get("campaign", {})),
            azurite=azurite,
        ).start()
        self.dataverse, self.campaign = self.stack.dataverse, self.stack.campaign
        self.contact_ids = self.dataverse.seed_contacts(
            options.get("contacts", 0), seed=options.get("seed", 1)
        )
        for profile in fake_profiles(options.get("campaign_profiles", 0), seed=99):
            self.campaign.put_profile(profile)
        preloaded = {p["externalId"] for p in self.campaign.snapshot("profile")}
        if options.get("mirror_profiles"):
            for row in self.dataverse.rows("contact"):
                self.campaign.put_profile(
                    {
                        "externalId": str(row["contactid"]).lower(),
                        "email": row.get("emailaddress1") or "",
                        "firstName": row.get("firstname") or "",
                        "lastName": row.get("lastname") or "",
                    }
                )
        self._preloaded = preloaded
        self._expected: dict[str, str] = {}
        self._arrivals: dict[str, float] = {}
        # Written profiles are noted as the store commits them: exact, and no polling on a busy CPU.
        self.campaign.store.update = self._noting_arrivals(self.campaign.store.update)
        self._inner_requests = 0
        self._inner_lock = threading.Lock()
        batch = self.dataverse.api.batch
        charge = batch.charge

        def counted_charge(count: int) -> None:
            with self._inner_lock:
                self._inner_requests += max(0, count)
            charge(count)

        batch.charge = counted_charge  # inner requests of `$batch` count toward service protection

    # -- commands ---------------------------------------------------------------------------------------

    def settings(self, sync_config: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None):
        return self.stack.app_settings(sync_config=sync_config, **(overrides or {}))

    def stats(self) -> dict[str, Any]:
        campaign, dataverse = self.campaign, self.dataverse
        with campaign.store.lock:
            engine_calls = dict(campaign.engine_calls)
        return {
            "campaign": {
                "engine_calls": engine_calls,
                "requests": campaign.request_count,
                "faults": dict(campaign.faults.counts),
                "rejected": dict(campaign.limit.rejected),
            },
            "dataverse": {
                "requests": dataverse.request_count,
                "charged": dataverse.request_count + self._inner_requests,
                "faults": dict(dataverse.faults.counts),
                "rejected": dict(dataverse.limit.rejected),
                "webhooks": dataverse.webhooks.stats.as_dict(),
            },
        }

    def protect(self, max_requests: int | None, window_seconds: float) -> None:
        """Turn Dataverse's service protection on (off with None) from now on, with an empty window."""
        limit = self.dataverse.limit
        limit.max_requests, limit.window_seconds = max_requests, window_seconds

    def edit_contacts(self, count: int, mapped: bool, seed: int) -> list[str]:
        """Change `count` random contacts as a user would: a mapped column (the record changes in Campaign)
        or only an unmapped one (the row shows up in change tracking, its Campaign record does not change)."""
        chosen = random.Random(seed).sample(self.contact_ids, count)
        for n, contact_id in enumerate(chosen):
            changes = {"firstname": f"Changed{seed}x{n}"} if mapped else {"jobtitle": f"Title {seed}x{n}"}
            self.dataverse.update_row("contact", contact_id, changes)
        return chosen

    def edit_versions(self, count: int, versions: int, seed: int) -> list[str]:
        """`versions` successive changes to each of `count` random contacts in mapped columns, interleaved
        across contacts as users make them: each change is a webhook job for Dataverse to deliver."""
        chosen = random.Random(seed).sample(self.contact_ids, count)
        for version in range(1, versions + 1):
            for n, contact_id in enumerate(chosen):
                changes = {"firstname": f"V{version}x{n}", "address1_city": f"City{version}"}
                self.dataverse.update_row("contact", contact_id, changes)
        return chosen

    def wait_deliveries(self, timeout: float) -> dict[str, Any]:
        """Wait until Dataverse has delivered every webhook job (retries and duplicates included)."""
        done = self.dataverse.wait_for_deliveries(timeout=timeout)
        return {"done": done, **self.dataverse.stats()["webhooks"]}

    def sample_contacts(self, count: int, seed: int) -> list[str]:
        return random.Random(seed).sample(self.contact_ids, count)

    def compare(self) -> dict[str, Any]:
        """Campaign against Dynamics, record by record (the oracle of `tests/flows/test_ingress.py`, for the
        shipped contact mapping): missing, extra, duplicated and differing profiles."""
        rows = {str(r["contactid"]).lower(): r for r in self.dataverse.rows("contact")}
        profiles: dict[str, dict[str, Any]] = {}
        duplicates = 0
        for profile in self.campaign.snapshot("profile"):
            key = profile.get("externalId")
            if key in self._preloaded:
                continue
            duplicates += key in profiles
            profiles[key] = profile
        differing = [
            k
            for k in rows.keys() & profiles.keys()
            if expected_profile(rows[k]) != actual_profile(profiles[k])
        ]
        example = None
        if differing:
            key = differing[0]
            expected, actual = expected_profile(rows[key]), actual_profile(profiles[key])
            example = {
                name: [expected[name], actual[name]] for name in expected if expected[name] != actual[name]
            }
        return {
            "contacts": len(rows),
            "profiles": len(profiles),
            "missing": len(rows.keys() - profiles.keys()),
            "extra": len(profiles.keys() - rows.keys()),
            "duplicates": duplicates,
            "differing": len(differing),
            "example": example,
        }

    def watch(self, expected: dict[str, str]) -> None:
        """From now on, note when each profile (by externalId) is written with the expected firstName:
        the moment Campaign holds the change, on the machine-wide monotonic clock the senders read too."""
        self._expected = dict(expected)
        self._arrivals = {}

    def arrivals(self) -> dict[str, float]:
        arrived, self._expected = dict(self._arrivals), {}
        return arrived

    def _noting_arrivals(self, update):
        def noted_update(resource: str, pkey: str, values: dict[str, Any]) -> dict[str, Any]:
            row = update(resource, pkey, values)
            key = row.get("externalId")
            if key in self._expected and row.get("firstName") == self._expected[key]:
                self._arrivals.setdefault(key, time.monotonic())
            return row

        return noted_update

    def campaign_optouts(self, count: int, seed: int) -> list[str]:
        """Opt `count` profiles out of phone calls in Campaign (as a Campaign user would); answers their
        contact ids. Only profiles whose contact still accepts calls, so each is a real change."""
        profiles = [
            p for p in self.campaign.snapshot("profile") if p.get("externalId") not in self._preloaded
        ]
        candidates = [p for p in profiles if not p.get("blackListPhone")]
        chosen = random.Random(seed).sample(candidates, min(count, len(candidates)))
        for profile in chosen:
            self.campaign.update_profile(profile["PKey"], {"blackListPhone": True})
        return [p["externalId"] for p in chosen]

    def optouts_in_dynamics(self, contact_ids: list[str]) -> int:
        return sum(bool((self.dataverse.get_row("contact", c) or {}).get("donotphone")) for c in contact_ids)

    def publish_events(self, count: int, seed: int) -> dict[str, int]:
        """Publish `count` Campaign email events about synced profiles (a fifth name only the recipient)."""
        profiles = [
            {"PKey": p["PKey"], "externalId": p["externalId"], "email": p["email"]}
            for p in self.campaign.snapshot("profile")
            if p.get("externalId") not in self._preloaded
        ]
        events = build_events(
            profiles, count, tenant=self.campaign.tenant, now=self.campaign.clock.now(), seed=seed
        )
        self.campaign.publish_events(events)
        return {
            "events": len(events),
            "bounces": sum(e["data"]["eventType"] == "bounce" for e in events),
            "by_recipient_only": sum("externalId" not in e["data"]["profile"] for e in events),
        }

    def activities(self) -> dict[str, int]:
        return {table: self.dataverse.store.count(table) for table in (*ACTIVITY_TABLES, "task")}

    def stop(self) -> None:
        self.stack.stop()


def _with_faults(options: dict[str, Any]) -> dict[str, Any]:
    options = dict(options)
    if options.get("faults") is not None:
        options["faults"] = FaultConfig(**options["faults"])
    return options


def main() -> None:
    server = Server(json.loads(sys.argv[1]))
    print(json.dumps({"ready": True, "contacts": len(server.contact_ids)}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        try:
            if op.startswith("_") or not callable(getattr(server, op, None)):
                raise ValueError(f"unknown command {op}")
            answer = {"ok": True, "result": getattr(server, op)(**command)}
        except Exception as exc:  # the driver reports it; the server keeps serving
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        print(json.dumps(answer, default=str), flush=True)
        if op == "stop":
            return
    server.stop()


if __name__ == "__main__":
    main()
