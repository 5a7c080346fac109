"""The real Azurite blob emulator as a session fixture (register with ``pytest_plugins``).

    pytest_plugins = ["sales_platform_tests.azurite"]

Tests get ``azurite`` (an ``AzuriteServer``): connection details, and ``stop()``/``start()`` to simulate
an outage on the same port and data folder. Without Azurite installed the tests are skipped, except
under CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_INSTALLED = "Azurite not installed: npm install azurite (see .ci/run)"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# Azurite's fixed development account. The key is public and documented by Microsoft; it guards nothing.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def find_azurite_blob() -> str | None:
    """The azurite-blob executable: $AZURITE_BLOB_BIN, the repo's node_modules, .tools/, then PATH."""
    configured = os.environ.get("AZURITE_BLOB_BIN")
    if configured:
        found = shutil.which(configured)
        if not found:
            # An explicit setting that points nowhere is a mistake to report, not a reason to look elsewhere.
            pytest.fail(f"AZURITE_BLOB_BIN={configured!r} is not an executable")
        return found
    for folder in (REPO, REPO / ".tools"):
        candidate = folder / "node_modules/.bin/azurite-blob"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("azurite-blob")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class AzuriteServer:
    """One azurite-blob process; ``stop()`` and ``start()`` keep its port and data folder."""

    host = "127.0.0.1"
    account_name = ACCOUNT_NAME
    account_key = ACCOUNT_KEY

    def __init__(self, executable: str, location: Path, log_path: Path, port: int | None = None) -> None:
        self.executable = executable
        self.location = location
        self.log_path = log_path
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def account_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
                f"AccountKey={self.account_key};BlobEndpoint={self.account_url};")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart) on the same port and folder; returns once the port accepts connections."""
        if self.running:
            return
        self.location.mkdir(parents=True, exist_ok=True)
        command = [self.executable, "--silent", "--location", str(self.location), "--blobHost", self.host,
                   "--blobPort", str(self.port), "--skipApiVersionCheck", "--loose",
                   # Azurite otherwise sends usage data to Microsoft on start and stop.
                   "--disableTelemetry"]
        with open(self.log_path, "ab") as log:
            try:
                self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL)
            except OSError as exc:  # typically: azurite-blob is a node script and node is not on PATH
                raise RuntimeError(f"cannot run {self.executable} (is Node.js on PATH?): {exc}") from exc
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts_connections(self.host, self.port):
            if self._process.poll() is not None:
                code = self._process.returncode
                raise RuntimeError(f"azurite-blob exited with {code}:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"azurite-blob not listening on {self.port} after {START_TIMEOUT_S:.0f} s:"
                                   f"\n{self._log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop gracefully (Azurite saves its metadata on SIGTERM); kill if it hangs. Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Azurite down for the block, back up afterwards even if the block fails."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    executable = find_azurite_blob()
    if executable is None:
        if os.environ.get("CI", "").lower() == "true":  # CI must run these tests, so it fails
            pytest.fail(NOT_INSTALLED, pytrace=False)
        pytest.skip(NOT_INSTALLED)
    root = tmp_path_factory.mktemp("azurite")
    server = AzuriteServer(executable, root / "data", root / "azurite.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
