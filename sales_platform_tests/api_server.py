"""The products API as deployed: gunicorn in its own process (`serve()`), HTTP or HTTPS."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sales_platform_tests.eventually import eventually

SERVE = ("import logging, sys; from sales_platform.api.products import serve; "
         "logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True); "
         "serve('127.0.0.1', 0, sys.argv[1], sys.argv[2] or None, sys.argv[3] or None, "
         "sys.argv[4] or None, workers=1)")
SERVING_ON = re.compile(r"products API on (https?)://127\.0\.0\.1:(\d+) ")
START_TIMEOUT_S = 60.0  # a Python start-up importing Flask and pandas, on a loaded machine


@contextmanager
def gunicorn_api(store: Path, token: str | None = None, certfile: Path | None = None,
                 keyfile: Path | None = None, pids: list[int] | None = None) -> Iterator[str]:
    """Yields the base URL (https://… when a certificate is given); stops the server after.
    ``pids`` gets the gunicorn master's process id (its worker is its child)."""
    args = [str(store), token or "", str(certfile or ""), str(keyfile or "")]
    process = subprocess.Popen([sys.executable, "-c", SERVE, *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if pids is not None:
        pids.append(process.pid)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(iter(process.stdout.readline, b"")),
                              daemon=True)
    reader.start()

    def reported() -> tuple[str, str] | None:
        if process.poll() is not None:
            raise AssertionError(f"serve() exited with {process.returncode}: {b''.join(output)!r}")
        found = SERVING_ON.search(b"".join(output).decode(errors="replace"))
        return (found.group(1), found.group(2)) if found else None

    try:
        scheme, port = eventually("the API to log its port", reported, timeout=START_TIMEOUT_S,
                                  interval=0.05, diagnose=lambda: f"output: {b''.join(output)!r}")
        yield f"{scheme}://127.0.0.1:{port}" if scheme == "http" else f"https://localhost:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
