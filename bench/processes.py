"""The benchmark's OS processes, seen from the driver: the emulator process (`bench.server`), one sync run
(`bench.worker`), the local functions host (`emulators.funchost`) and the webhook senders
(`bench.webhooks`). Every process is started in its own session and stopped by its own id."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from emulators import processes as hosts
from emulators.processes import ProcessError, end, spawn
from emulators.processes import first_json_line as _first_line
from emulators.processes import tail as _tail


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The benchmark runs its stacks in lanes (threads of the driver). A background lane's thread runs under
# SCHED_IDLE, and so does every thread and process it starts (they inherit the policy): they take only
# the CPU the main lane leaves, and a main-lane process that wakes up gets a core from them at once (a
# task at niceness 19 keeps its core to the end of its time slice, which delays every wake-up of the
# main lane's I/O threads). Every live process group is noted, so an interrupted benchmark can stop
# them all from the main thread.
_live_groups: set[int] = set()


def run_in_background() -> None:
    """From now on, the calling thread and everything it starts run only on otherwise idle CPU."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def adopt(pid: int) -> None:
    """Note a process's group (each process starts a session of its own) for `end_all`."""
    _live_groups.add(pid)


def end_all() -> None:
    for pid in list(_live_groups):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    _live_groups.clear()


def _spawn(args: list[str], log: Path, **options: Any) -> subprocess.Popen:
    return spawn(args, log, on_start=adopt, **options)


def _end(process: subprocess.Popen, timeout: float = 10) -> None:
    end(process, timeout)
    _live_groups.discard(process.pid)


class Workspace:
    """A temporary folder for settings files and process logs (kept on failure, for reading)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(tempfile.mkdtemp(prefix="acsd365-bench-"))
        self.path.mkdir(exist_ok=True)

    def lane(self, name: str) -> Workspace:
        """A sub-folder for one lane's files, so that concurrent lanes keep separate logs."""
        return Workspace(self.path / name)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def file(self, name: str, content: Any | None = None) -> Path:
        path = self.path / name
        if content is not None:
            path.write_text(json.dumps(content))
        return path


class ServerProcess:
    """`bench.server`: the emulators with one set of options; `call(op, **args)` runs one command."""

    def __init__(self, name: str, options: dict[str, Any], workspace: Workspace) -> None:
        self.log = workspace.file(f"server-{name}.log")
        self.process = _spawn(["-m", "bench.server", json.dumps(options)], self.log, stdin=subprocess.PIPE)
        self.ready = _first_line(self.process, self.log, f"emulator process '{name}'")
        self._lock = threading.Lock()  # one command at a time on the pipe, from any thread

    def call(self, op: str, **arguments: Any) -> Any:
        with self._lock:
            self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise ProcessError(f"the emulator process died during '{op}':\n{_tail(self.log)}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise ProcessError(
                f"emulator command '{op}' failed: {answer['error']}\n{answer.get('trace', '')}"
            )
        return answer["result"]

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("stop")
                self.process.wait(timeout=10)
            except (ProcessError, OSError, subprocess.TimeoutExpired):
                pass
        _end(self.process)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_worker(
    flow: str, settings: dict[str, str], workspace: Workspace, *, timeout: float, extra: list[str] = ()
) -> dict[str, Any]:
    """One `bench.worker` run to its end; answers its JSON result."""
    settings_file = workspace.file(f"settings-{secrets.token_hex(4)}.json", settings)
    log = workspace.file("worker.log")
    process = _spawn(["-m", "bench.worker", flow, "--settings", str(settings_file), *extra], log)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ProcessError(f"the {flow} worker ran over {timeout:.0f} s; see {log}") from None
    finally:
        _end(process)  # on a timeout or an interruption; a no-op once it has exited
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise ProcessError(f"the {flow} worker failed (exit {process.returncode}):\n{_tail(log)}")
    return json.loads(lines[-1])


class HostProcess(hosts.HostProcess):
    """The local functions host, timers off (webhooks only), its files in the lane's workspace."""

    def __init__(self, settings: dict[str, str], workspace: Workspace, *, name: str = "host") -> None:
        super().__init__(settings, workspace.path, name=name, on_start=adopt)

    def stop(self) -> None:
        _end(self.process)


class SendersProcess:
    """`bench.webhooks`: receives Dataverse's webhook deliveries and posts them to the host from many
    threads. Started first (its relay URL is where `d365 setup` points the webhook), then `run()`."""

    def __init__(self, settings: dict[str, str], workspace: Workspace, arguments: list[str]) -> None:
        settings_file = workspace.file("senders-settings.json", settings)
        self.log = workspace.file("senders.log")
        self.process = _spawn(
            ["-m", "bench.webhooks", "--settings", str(settings_file), *arguments],
            self.log,
            stdin=subprocess.PIPE,
        )
        self.relay_url = _first_line(self.process, self.log, "the webhook senders")["relay_url"]

    def run(self, timeout: float) -> dict[str, Any]:
        try:
            out, _ = self.process.communicate("go\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ProcessError(f"the webhook senders ran over {timeout:.0f} s; see {self.log}") from None
        finally:
            _end(self.process)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if self.process.returncode != 0 or not lines:
            raise ProcessError(f"the webhook senders failed:\n{_tail(self.log)}")
        return json.loads(lines[-1])

    def stop(self) -> None:
        _end(self.process)
