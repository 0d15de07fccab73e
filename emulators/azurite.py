"""Starts Azurite (the Azure Storage emulator, npm package pinned in package.json) on free loopback
ports and gives its connection string. Used by the test harness, `make demo` and `make bench`."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Azurite's published development account; a public constant, not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at http://[\d.]+:(\d+)"
)


class AzuriteError(RuntimeError):
    pass


class Azurite:
    """`with Azurite() as azurite: azurite.connection_string` — in-memory, stopped on exit."""

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self._timeout = startup_timeout
        self._process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.ports: dict[str, int] = {}

    @staticmethod
    def executable() -> str:
        local = ROOT / "node_modules" / ".bin" / "azurite"
        if local.exists():
            return str(local)
        raise AzuriteError("Azurite is not installed: run `make setup` (npm ci) first")

    def start(self) -> Azurite:
        # In-memory data; the temp dir only receives Azurite's debug/extent side files.
        self._tmp = tempfile.TemporaryDirectory(prefix="azurite-")
        command = [
            self.executable(),
            "--silent",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            "0",
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            "0",
        ]
        self._process = subprocess.Popen(
            command,
            cwd=self._tmp.name,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        seen: list[str] = []
        done = threading.Event()

        def read() -> None:
            assert self._process and self._process.stdout
            for line in self._process.stdout:
                seen.append(line.rstrip())
                match = _LISTENING.search(line)
                if match:
                    self.ports[match.group(1).lower()] = int(match.group(2))
                    if len(self.ports) == 3:
                        done.set()
            done.set()  # process ended

        threading.Thread(target=read, name="azurite-output", daemon=True).start()
        if not done.wait(self._timeout) or len(self.ports) < 3:
            self.stop()
            raise AzuriteError("Azurite did not start:\n" + "\n".join(seen[-20:]))
        return self

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.ports['blob']}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.ports['queue']}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.ports['table']}/{ACCOUNT};"
        )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
