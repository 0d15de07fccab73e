"""The `/_emulator/` HTTP surface, for a process that does not hold the emulator object (the demo).
No authentication, faults or limits. Errors answer 400 `{"error": "..."}`.

  GET   /_emulator/stats                   counters (engine calls, requests, tokens, limit, faults, journal)
  GET   /_emulator/snapshot/<resource>     stored rows
  POST  /_emulator/profiles                {profile}                      -> {"PKey"}
  PATCH /_emulator/profiles/<PKey>         {changes}                      -> {"PKey"}
  POST  /_emulator/events                  {"events", "duplicate_rate"?, "shuffle_seed"?} -> {"positions"}
  POST  /_emulator/events/generate         {"n", "types"?, "seed"?}       -> {"events": [...], "count"}
  POST  /_emulator/faults                  FaultConfig fields             -> the configuration
  POST  /_emulator/metadata/remove       {"resource", "field"|"filter"|"link"|"key"} -> {}
  POST  /_emulator/metadata/restore                                     -> {}
  POST  /_emulator/time                    {"advance_seconds"}            -> {}
  POST  /_emulator/reset-counters                                         -> {}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from werkzeug.wrappers import Request, Response

from emulators.common import FaultConfig, FaultInjector

from .responses import json_response
from .schema import DataError
from .store import Store


class CampaignControls(Protocol):
    """What the admin surface drives: the test hooks of `CampaignEmulator`, which composes it."""

    store: Store
    faults: FaultInjector

    def stats(self) -> dict[str, Any]: ...

    def snapshot(self, resource: str) -> list[dict[str, Any]]: ...

    def put_profile(self, profile: dict[str, Any]) -> str: ...

    def update_profile(self, pkey: str, changes: dict[str, Any]) -> None: ...

    def publish_events(
        self, events: list[dict[str, Any]], *, duplicate_rate: float = ..., shuffle_seed: int | None = ...
    ) -> list[str]: ...

    def generate_events(
        self, n: int, *, types: tuple[str, ...] = ..., seed: int = ...
    ) -> list[dict[str, Any]]: ...

    def remove_from_metadata(
        self,
        resource: str,
        *,
        field: str | None = ...,
        filter: str | None = ...,
        link: str | None = ...,
        key: bool = ...,
    ) -> None: ...

    def restore_metadata(self) -> None: ...

    def advance_time(self, seconds: float) -> None: ...

    def reset_counters(self) -> None: ...


class AdminApi:
    def __init__(self, emulator: CampaignControls) -> None:
        self.emulator = emulator

    def handle(self, request: Request) -> Response:
        parts = [part for part in request.path.split("/") if part][1:]
        route = (request.method, *parts[:2])
        try:
            if route == ("GET", "stats"):
                return json_response(self.emulator.stats())
            if route[:2] == ("GET", "snapshot") and len(parts) == 2:
                if parts[1] not in self.emulator.store.tables:
                    return _error(f"unknown resource {parts[1]}", 404)
                return json_response(self.emulator.snapshot(parts[1]))
            if route == ("POST", "profiles") and len(parts) == 1:
                return json_response({"PKey": self.emulator.put_profile(_body(request))}, 201)
            if route[:2] == ("PATCH", "profiles") and len(parts) == 2:
                self.emulator.update_profile(parts[1], _body(request))
                return json_response({"PKey": parts[1]})
            if route == ("POST", "events") and len(parts) == 1:
                body = _body(request)
                positions = self.emulator.publish_events(
                    body.get("events", []),
                    duplicate_rate=float(body.get("duplicate_rate", 0.0)),
                    shuffle_seed=body.get("shuffle_seed"),
                )
                return json_response({"positions": positions})
            if route == ("POST", "events", "generate"):
                body = _body(request)
                options: dict[str, Any] = {"seed": int(body.get("seed", 1))}
                if "types" in body:
                    options["types"] = tuple(body["types"])
                events = self.emulator.generate_events(int(body.get("n", 10)), **options)
                return json_response({"events": events, "count": len(events)})
            if route == ("POST", "faults"):
                config = FaultConfig(**_body(request))
                self.emulator.faults.configure(config)
                return json_response(dataclasses.asdict(config))
            if route == ("POST", "metadata", "remove"):
                body = _body(request)
                self.emulator.remove_from_metadata(
                    str(body.get("resource", "")),
                    field=body.get("field"),
                    filter=body.get("filter"),
                    link=body.get("link"),
                    key=bool(body.get("key", False)),
                )
                return json_response({})
            if route == ("POST", "metadata", "restore"):
                self.emulator.restore_metadata()
                return json_response({})
            if route == ("POST", "time"):
                self.emulator.advance_time(float(_body(request).get("advance_seconds", 0)))
                return json_response({})
            if route == ("POST", "reset-counters"):
                self.emulator.reset_counters()
                return json_response({})
        except DataError as error:
            return _error(f"{error.code} {error.detail}", error.status if error.status != 500 else 400)
        except (TypeError, ValueError, KeyError) as error:
            return _error(str(error))
        return _error(f"no admin route {request.method} {request.path}", 404)


def _body(request: Request) -> dict[str, Any]:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise ValueError("a JSON object body is expected")
    return body


def _error(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status)
