"""A small local stand-in for the Azure Functions host (Core Tools cannot be installed here).

It loads every function folder from its `function.json` and serves:
- HTTP triggers at `/api/<route>` with `authLevel` honoured (`?code=` or `x-functions-key`; keys from a
  keys file like the host's, `{"masterKey": ..., "functionKeys": {"default": ...}}`);
- timer triggers on their NCRONTAB schedules (`%APP_SETTING%` resolved), one run at a time per function,
  and on demand through the real host's admin API: `POST /admin/functions/<name>` with the master key.

    python -m emulators.funchost --port 7071 [--settings local.settings.json] [--keys keys.json] [--no-timers]

In-process use (tests): `FunctionHost(app_root, keys=..., settings=...)` — the caller owns the process
environment. Dev/test only: never deployed.
"""

from __future__ import annotations

import argparse
import hmac
import importlib
import json
import logging
import os
import re
import secrets
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from croniter import croniter
from werkzeug.wrappers import Request, Response

from emulators.common import EmulatorServer

log = logging.getLogger("funchost")
ROOT = Path(__file__).resolve().parents[1]


class CronSchedule:
    """An NCRONTAB schedule as the host reads it: six fields, the seconds first (croniter parses it)."""

    def __init__(self, expression: str) -> None:
        if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
            raise ValueError(f"NCRONTAB '{expression}' must have 6 valid fields (second first)")
        self.expression = expression

    def next_after(self, when: datetime) -> datetime:
        return croniter(self.expression, when, second_at_beginning=True).get_next(datetime)


@dataclass
class FunctionSpec:
    name: str
    trigger: dict[str, Any]
    entry: Any

    @property
    def kind(self) -> str:
        return self.trigger["type"]


def resolve_setting(value: str, settings: Mapping[str, str]) -> str:
    """`%NAME%` → the app setting, as the host resolves binding expressions."""

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name not in settings:
            raise KeyError(f"binding refers to app setting {name}, which is not set")
        return settings[name]

    return re.sub(r"%([A-Za-z0-9_]+)%", lookup, value)


def discover(app_root: Path) -> list[FunctionSpec]:
    specs = []
    for manifest in sorted(app_root.glob("*/function.json")):
        folder = manifest.parent
        config = json.loads(manifest.read_text())
        trigger = next(b for b in config["bindings"] if b["type"].endswith("Trigger"))
        module = importlib.import_module(folder.name)
        specs.append(FunctionSpec(folder.name, trigger, getattr(module, config.get("entryPoint", "main"))))
    return specs


class FunctionHost:
    def __init__(
        self,
        app_root: Path = ROOT,
        *,
        keys: Mapping[str, Any] | None = None,
        settings: Mapping[str, str] | None = None,
        port: int = 0,
        run_timers: bool = True,
    ) -> None:
        self.settings = dict(os.environ if settings is None else settings)
        self.keys = dict(
            keys
            or {
                "masterKey": secrets.token_urlsafe(24),
                "functionKeys": {"default": secrets.token_urlsafe(24)},
            }
        )
        self.functions = {spec.name: spec for spec in discover(app_root)}
        self._run_timers = run_timers
        self._timer_locks = {name: threading.Lock() for name in self.functions}
        self._stop = threading.Event()
        self.invocations: dict[str, int] = dict.fromkeys(self.functions, 0)
        self._server = EmulatorServer(self._wsgi, port=port)
        self.base_url = self._server.base_url

    # -- keys and auth ------------------------------------------------------------------------------

    @property
    def function_key(self) -> str:
        return self.keys["functionKeys"]["default"]

    @property
    def master_key(self) -> str:
        return self.keys["masterKey"]

    def _authorised(self, request: Request, level: str) -> bool:
        if level == "anonymous":
            return True
        sent = request.args.get("code") or request.headers.get("x-functions-key") or ""
        allowed = [self.master_key] + ([] if level == "admin" else list(self.keys["functionKeys"].values()))
        return any(hmac.compare_digest(sent.encode(), key.encode()) for key in allowed)

    # -- invoking -------------------------------------------------------------------------------------

    def invoke_timer(self, name: str, *, past_due: bool = False, wait: bool = False) -> bool:
        """Run a timer function now. The host runs timers as singletons: a scheduled occurrence is skipped
        while the previous one runs; a manual (admin API) invocation, `wait=True`, runs after it."""
        from azure.functions.timer import TimerRequest

        lock = self._timer_locks[name]
        if not lock.acquire(blocking=wait):
            log.warning("timer %s still running; this occurrence is skipped", name)
            return False
        try:
            self.invocations[name] += 1
            self.functions[name].entry(TimerRequest(past_due=past_due))
        except Exception:
            log.exception("timer %s failed", name)
        finally:
            lock.release()
        return True

    def _invoke_http(self, spec: FunctionSpec, request: Request) -> Response:
        import azure.functions as func

        http_request = func.HttpRequest(
            request.method,
            request.url,
            headers=dict(request.headers),
            params=dict(request.args),
            route_params={},
            body=request.get_data(),
        )
        self.invocations[spec.name] += 1
        try:
            answer = spec.entry(http_request)
        except Exception:
            log.exception("function %s failed", spec.name)
            return Response("Internal Server Error", status=500)
        return Response(
            answer.get_body(),
            status=answer.status_code,
            headers=dict(answer.headers),
            mimetype=answer.mimetype,
        )

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        return self._route(request)(environ, start_response)

    def _route(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/admin/functions/") and request.method == "POST":
            name = path.removeprefix("/admin/functions/")
            if name not in self.functions:
                return Response(status=404)
            if not self._authorised(request, "admin"):
                return Response(status=401)
            threading.Thread(
                target=self.invoke_timer, args=(name,), kwargs={"wait": True}, daemon=True
            ).start()
            return Response(status=202)
        if path.startswith("/api/"):
            route = path.removeprefix("/api/")
            for spec in self.functions.values():
                trigger = spec.trigger
                if spec.kind != "httpTrigger" or trigger.get("route", spec.name) != route:
                    continue
                if request.method.lower() not in [m.lower() for m in trigger.get("methods", ["get", "post"])]:
                    return Response(status=405)
                if not self._authorised(request, trigger.get("authLevel", "function")):
                    return Response(status=401)
                return self._invoke_http(spec, request)
        return Response(status=404)

    # -- timers -----------------------------------------------------------------------------------------

    def _timer_loop(self, spec: FunctionSpec) -> None:
        schedule = CronSchedule(resolve_setting(spec.trigger["schedule"], self.settings))
        due = schedule.next_after(datetime.now(UTC))
        while not self._stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
            late = (datetime.now(UTC) - due).total_seconds() > 10
            threading.Thread(
                target=self.invoke_timer, args=(spec.name,), kwargs={"past_due": late}, daemon=True
            ).start()
            due = schedule.next_after(datetime.now(UTC))

    def start(self) -> FunctionHost:
        self._server.start()
        if self._run_timers:
            for spec in self.functions.values():
                if spec.kind == "timerTrigger":
                    threading.Thread(target=self._timer_loop, args=(spec,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.stop()

    def __enter__(self) -> FunctionHost:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", default=str(ROOT / "local.settings.json"))
    parser.add_argument("--keys", help="JSON keys file; default: generated and printed")
    parser.add_argument("--no-timers", action="store_true", help="run timers only on demand")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings_file = Path(args.settings)
    if settings_file.exists():
        os.environ.update(json.loads(settings_file.read_text()).get("Values", {}))
    keys = json.loads(Path(args.keys).read_text()) if args.keys else None
    sys.path.insert(0, str(ROOT))
    host = FunctionHost(ROOT, keys=keys, port=args.port, run_timers=not args.no_timers).start()
    print(
        json.dumps(
            {
                "base_url": host.base_url,
                "functions": sorted(host.functions),
                "function_key": host.function_key,
                "master_key": host.master_key,
            }
        ),
        flush=True,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    host.stop()
    # As the worker does before it exits: what the app's telemetry buffered (set up by shared.app at
    # the first invocation, when APPLICATIONINSIGHTS_CONNECTION_STRING is set) goes out.
    from shared.telemetry.setup import flush_telemetry

    flush_telemetry()


if __name__ == "__main__":
    main()
