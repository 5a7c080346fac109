"""The real Azurite blob emulator as a session fixture (register with ``pytest_plugins``).

    pytest_plugins = ["sales_platform_tests.azurite"]

Tests get ``azurite`` (an ``AzuriteServer``): connection details, and ``stop()``/``start()`` to simulate
an outage on the same port and data folder. Without Azurite installed the tests fail, on a laptop as
in CI (``make install-dev`` installs it into .tools/): a skip would hide that the Azure layer was never
tested. ``SALES_PLATFORM_TEST_SKIP_AZURITE=1`` is the explicit opt-out: then they skip on a laptop,
and still fail in CI (``conftest.skip_or_fail``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from sales_platform_tests.conftest import TRUTHY, skip_or_fail
from sales_platform_tests.eventually import eventually
from sales_platform_tests.ports import PortInUse, PortReservation

REPO = Path(__file__).resolve().parents[1]
NOT_INSTALLED = "Azurite not installed: make install-dev (npm install --prefix .tools azurite, as .ci/run)"
SKIP_VARIABLE = "SALES_PLATFORM_TEST_SKIP_AZURITE"  # the explicit opt-out of the Azure tests
START_TIMEOUT_S = 60.0
START_ATTEMPTS = 3
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


LISTENING = re.compile(rb"successfully listens on https?://[^\s:]+:(\d+)")


class AzuriteServer:
    """One azurite-blob process; ``stop()`` and ``start()`` keep its port and data folder.

    The first start binds port 0 and reads the port Azurite reports. While stopped (an outage) the port
    stays held by this process (bound, not listening: connections are refused), so nothing else can
    take it before the restart.
    """

    host = "127.0.0.1"
    account_name = ACCOUNT_NAME
    account_key = ACCOUNT_KEY

    def __init__(self, executable: str, location: Path, log_path: Path, port: int | None = None) -> None:
        self.executable = executable
        self.location = location
        self.log_path = log_path
        self.port = port  # None until the first start reports it
        self._process: subprocess.Popen[bytes] | None = None
        self._reservation: PortReservation | None = None

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
        """Start (or restart) on the same port and folder; returns once Azurite reports it listens."""
        if self.running:
            return
        self.location.mkdir(parents=True, exist_ok=True)
        failures = []
        for _ in range(START_ATTEMPTS):  # the same port each time: clients already have its URL
            try:
                self._start_once()
                return
            except PortInUse as exc:
                failures.append(str(exc))
                time.sleep(1.0)
        raise RuntimeError(f"azurite-blob could not bind port {self.port}: {'; '.join(failures)}")

    def _start_once(self) -> None:
        command = [self.executable, "--silent", "--location", str(self.location), "--blobHost", self.host,
                   "--blobPort", str(self.port or 0), "--skipApiVersionCheck", "--loose",
                   # Azurite otherwise sends usage data to Microsoft on start and stop.
                   "--disableTelemetry"]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._release_port()  # right before Azurite binds it
        with open(self.log_path, "ab") as log:
            try:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL)
            except OSError as exc:  # typically: azurite-blob is a node script and node is not on PATH
                raise RuntimeError(f"cannot run {self.executable} (is Node.js on PATH?): {exc}") from exc
        self._process = process

        def listening_port() -> int | None:
            if process.poll() is not None:
                output = self._new_log(offset)
                if b"EADDRINUSE" in output or b"address already in use" in output.lower():
                    raise PortInUse(output.decode(errors="replace").strip()[-500:])
                raise RuntimeError(f"azurite-blob exited with {process.returncode}:\n{self._log_tail()}")
            found = LISTENING.search(self._new_log(offset))
            return int(found.group(1)) if found else None

        try:
            port = eventually("azurite-blob to report it listens", listening_port, timeout=START_TIMEOUT_S,
                              interval=0.1, diagnose=lambda: f"azurite log:\n{self._log_tail()}")
        except BaseException:
            self.stop(hold_port=False)
            raise
        if self.port is not None and port != self.port:
            self.stop(hold_port=False)
            raise RuntimeError(f"azurite-blob listens on {port}, expected {self.port}")
        self.port = port

    def stop(self, hold_port: bool = True) -> None:
        """Stop gracefully (Azurite saves its metadata on SIGTERM); kill if it hangs. Idempotent.
        With ``hold_port`` the port stays reserved for the restart."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if hold_port and self.port is not None and self._reservation is None:
            try:
                self._reservation = PortReservation(self.port, self.host)
            except OSError:  # taken already: the restart will report it
                self._reservation = None
        elif not hold_port:
            self._release_port()

    def _release_port(self) -> None:
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            reservation.release()

    def _new_log(self, offset: int) -> bytes:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read()
        except OSError:
            return b""

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


def skip_opted_out(environ: Mapping[str, str] = os.environ) -> bool:
    """The opt-out is a truthy setting (1, true, yes, on); an empty or "0" one is not."""
    return environ.get(SKIP_VARIABLE, "").strip().lower() in TRUTHY


def require_azurite_installed() -> None:
    """Missing Azurite fails the tests that need it, unless the opt-out is set (then skip_or_fail:
    a skip on a laptop, still a failure in CI)."""
    if skip_opted_out():
        skip_or_fail(f"{NOT_INSTALLED}; skipped because {SKIP_VARIABLE} is set")
    pytest.fail(f"{NOT_INSTALLED}, or set {SKIP_VARIABLE}=1 to skip the Azure tests", pytrace=False)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    executable = find_azurite_blob()
    if executable is None:
        require_azurite_installed()
    root = tmp_path_factory.mktemp("azurite")
    server = AzuriteServer(executable, root / "data", root / "azurite.log")
    server.start()
    try:
        yield server
    finally:
        server.stop(hold_port=False)
