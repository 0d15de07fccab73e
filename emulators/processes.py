"""Child processes of the local stack, for tests and the benchmark: the local functions host as a process
of its own (as Azure runs the app on several instances), started in its own session and stopped by its
group id. Dev/test only."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class ProcessError(RuntimeError):
    pass


def spawn(
    args: list[str], log: Path, *, on_start: Callable[[int], None] | None = None, **options: Any
) -> subprocess.Popen:
    """`python <args>` from the repository root in a session of its own; stderr goes to `log`."""
    with log.open("a") as stderr:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
            **options,
        )
    if on_start is not None:
        on_start(process.pid)
    return process


def end(process: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a process and its children (SIGTERM, then SIGKILL); a no-op once it has exited."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def first_json_line(process: subprocess.Popen, log: Path, what: str) -> dict[str, Any]:
    """The JSON line a child prints once it is ready."""
    line = process.stdout.readline()
    if not line:
        raise ProcessError(f"{what} did not start; last lines of {log}:\n{tail(log)}")
    return json.loads(line)


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


class HostProcess:
    """The local functions host (what `func start` does) in a process of its own; with `timers` off, its
    HTTP functions only (timers still run on demand through the admin API). Settings and keys files and
    the log are written into `folder`."""

    def __init__(
        self,
        settings: dict[str, str],
        folder: Path,
        *,
        name: str = "host",
        timers: bool = False,
        on_start: Callable[[int], None] | None = None,
    ) -> None:
        settings_file = folder / f"{name}.settings.json"
        settings_file.write_text(
            json.dumps({"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", **settings}})
        )
        self.keys = {"masterKey": secrets.token_hex(16), "functionKeys": {"default": secrets.token_hex(16)}}
        keys_file = folder / f"{name}.keys.json"
        keys_file.write_text(json.dumps(self.keys))
        self.log = folder / f"{name}.log"
        self.process = spawn(
            [
                "-m",
                "emulators.funchost",
                "--port",
                "0",
                *([] if timers else ["--no-timers"]),
                "--settings",
                str(settings_file),
                "--keys",
                str(keys_file),
            ],
            self.log,
            on_start=on_start,
        )
        self.base_url = first_json_line(self.process, self.log, "the functions host")["base_url"]

    @property
    def function_key(self) -> str:
        return self.keys["functionKeys"]["default"]

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/api/webhook_d365?code={self.function_key}"

    def trigger(self, function: str) -> None:
        """Run a timer function now, as the real host's admin API does."""
        import requests  # only the callers that trigger need it

        answer = requests.post(
            f"{self.base_url}/admin/functions/{function}",
            headers={"x-functions-key": self.keys["masterKey"]},
            json={"input": ""},
            timeout=10,
        )
        answer.raise_for_status()

    def stop(self) -> None:
        end(self.process)

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
