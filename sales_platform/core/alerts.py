"""Structured run-failure alerts: a JSON line in a file, and optionally a webhook POST."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sales_platform.core.redact import redact_text


@dataclass
class RunFailureAlert:
    run_id: str
    job_name: str
    status: str
    failed_at: str
    partition: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    failed_steps: list[dict[str, str]] = field(default_factory=list)
    message: str = ""

    def redacted(self, secrets: tuple[str, ...] = ()) -> RunFailureAlert:
        """No password, key or token leaves through an alert."""
        return RunFailureAlert(
            **{**asdict(self),
               "message": redact_text(self.message, secrets),
               "failed_steps": [{k: redact_text(v, secrets) for k, v in step.items()}
                                for step in self.failed_steps]})


def alerted_run_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        try:
            ids.add(json.loads(line)["run_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line does not stop alerting
    return ids


def append_alert(path: Path, alert: RunFailureAlert) -> bool:
    """Append one JSON line per run (False when the run was already alerted, e.g. by the CLI and
    then by the sensor); O_APPEND keeps concurrent writers' lines whole."""
    if alert.run_id in alerted_run_ids(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(asdict(alert), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return True


def post_alert(url: str, alert: RunFailureAlert, timeout_s: float = 5.0) -> int:
    import requests

    reply = requests.post(url, json=asdict(alert), timeout=timeout_s)
    return reply.status_code
